// The data-free poisson2d losses on the Q1 grid (PHYSICS.md, section 1): the energy
//   J(u) = sum over elements of q1::element_energy (nu = exp(log nu) nodal, constant source f),
// whose gradient is K(nu) u - F, and the residual J_res(u) = ||K(nu) u - F||^2 over the free nodes
// (all but the x = 0 and x = 1 columns), whose gradient is 2 K (m r). Fields are plain fp32
// [b, 1, Ny, Nx] with x fastest on [0, 1]^2 (hx = 1 / (Nx - 1), hy = 1 / (Ny - 1)), on the CPU or
// the GPU; the arithmetic is fp64 and, for a given field, bitwise the same on any number of OpenMP
// threads, and run to run on the GPU.
#pragma once

#include <cstdint>
#include <vector>

#include "config/deck.hpp"
#include "core/tensor.hpp"

namespace pdegen {

class PoissonLoss2D {
 public:
  PoissonLoss2D(LossKind kind, double source) : kind_(kind), source_(source) {}
  explicit PoissonLoss2D(const ProblemConfig& problem)
      : PoissonLoss2D(problem.loss, problem.poisson.source) {}

  // The SUM over the b samples of J(u_s). With `du`, also du = grad_scale * dJ/du (fp32, written in
  // place when *du already is a plain fp32 tensor of u's shape, otherwise replaced); the energy's
  // gradient is K u - F at every node, Dirichlet columns included (the lift's backward zeroes them).
  // With `per_sample`, the b values J(u_s).
  double evaluate(const Tensor& u, const Tensor& log_nu, double grad_scale, Tensor* du,
                  std::vector<double>* per_sample) const;

  LossKind kind() const { return kind_; }
  double source() const { return source_; }

 private:
  // u, log_nu (and du) on the GPU: poisson_loss_cuda.cu, the same arithmetic in fp64 per node.
  double evaluate_cuda(const Tensor& u, const Tensor& log_nu, double grad_scale, Tensor* du,
                       std::vector<double>* per_sample) const;

  LossKind kind_;
  double source_;
};

// The discrete operator in fp64 on one nx x ny field (row-major, x fastest), shared with the
// reference solver and the tests. The square forms take n = nx = ny.
//
// nu = exp(log nu) per node: the coefficient exactly as the loss sees it.
void nodal_coefficient(const float* log_nu, int64_t count, double* nu);
// Ku = K(nu) u at every node (no Dirichlet rows: K is the assembled Neumann stiffness matrix).
void apply_stiffness(const double* nu_nodal, const double* u, double* Ku, int nx, int ny);
inline void apply_stiffness(const double* nu_nodal, const double* u, double* Ku, int n) {
  apply_stiffness(nu_nodal, u, Ku, n, n);
}
// F = the assembled load vector of the constant source f.
void load_vector(double f, int nx, int ny, double* F);
inline void load_vector(double f, int n, double* F) { load_vector(f, n, n, F); }

}  // namespace pdegen

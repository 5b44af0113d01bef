// The data-free poisson2d and poisson3d losses on the Q1 grid: the
// energy
//   J(u) = sum over elements of q1::element_energy (nu = exp(log nu) nodal, constant source f),
// whose gradient is K(nu) u - F, and the residual J_res(u) = ||K(nu) u - F||^2 over the free nodes
// (all but the x = 0 and x = 1 planes, i.e. the first and last node of every x line), whose gradient
// is 2 K (m r). Fields are plain fp32 [b, 1, Ny, Nx] (2D) or [b, 1, Nz, Ny, Nx] (3D) with x fastest
// on [0, 1]^Dim (h_d = 1 / (N_d - 1)), on the CPU or the GPU; the dimension is the tensor's rank
// minus two. The arithmetic is fp64 and, for a given field, bitwise the same on any number of OpenMP
// threads, and run to run on the GPU.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "config/choices.hpp"
#include "core/tensor.hpp"

namespace pdegen {

class PoissonLoss {
 public:
  PoissonLoss(LossKind kind, double source) : kind_(kind), source_(source) {}

  // The SUM over the b samples of J(u_s). With `du`, also du = grad_scale * dJ/du (fp32, written in
  // place when *du already is a plain fp32 tensor of u's shape, otherwise replaced); the energy's
  // gradient is K u - F at every node, Dirichlet nodes included (the lift's backward zeroes them).
  // With `per_sample`, the b values J(u_s).
  double evaluate(const Tensor& u, const Tensor& log_nu, double grad_scale, Tensor* du,
                  std::vector<double>* per_sample) const;

  LossKind kind() const { return kind_; }
  double source() const { return source_; }

 private:
  template <int Dim>
  double evaluate_cpu(const Tensor& u, const Tensor& log_nu, double grad_scale, Tensor* du,
                      std::vector<double>* per_sample) const;
  // u, log_nu (and du) on the GPU: poisson_loss_cuda.cu, the same arithmetic in fp64 per node.
  double evaluate_cuda(const Tensor& u, const Tensor& log_nu, double grad_scale, Tensor* du,
                       std::vector<double>* per_sample) const;

  LossKind kind_;
  double source_;
};

// The discrete operator in fp64 on one field (row-major, x fastest), shared with the reference
// solver and the tests. `extents` are the node counts per axis, x first: {nx, ny} or {nx, ny, nz}.
// The short forms take (nx, ny), (nx, ny, nz) or a square n = nx = ny.
//
// nu = exp(log nu) per node: the coefficient exactly as the loss sees it.
void nodal_coefficient(const float* log_nu, int64_t count, double* nu);
// Ku = K(nu) u at every node (no Dirichlet rows: K is the assembled Neumann stiffness matrix).
void apply_stiffness(const double* nu_nodal, const double* u, double* Ku, std::span<const int64_t> extents);
inline void apply_stiffness(const double* nu_nodal, const double* u, double* Ku, int nx, int ny) {
  const int64_t e[2] = {nx, ny};
  apply_stiffness(nu_nodal, u, Ku, e);
}
inline void apply_stiffness(const double* nu_nodal, const double* u, double* Ku, int nx, int ny, int nz) {
  const int64_t e[3] = {nx, ny, nz};
  apply_stiffness(nu_nodal, u, Ku, e);
}
inline void apply_stiffness(const double* nu_nodal, const double* u, double* Ku, int n) {
  apply_stiffness(nu_nodal, u, Ku, n, n);
}
// F = the assembled load vector of the constant source f.
void load_vector(double f, std::span<const int64_t> extents, double* F);
inline void load_vector(double f, int nx, int ny, double* F) {
  const int64_t e[2] = {nx, ny};
  load_vector(f, e, F);
}
inline void load_vector(double f, int nx, int ny, int nz, double* F) {
  const int64_t e[3] = {nx, ny, nz};
  load_vector(f, e, F);
}
inline void load_vector(double f, int n, double* F) { load_vector(f, n, n, F); }

}  // namespace pdegen

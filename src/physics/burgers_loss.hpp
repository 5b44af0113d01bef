// The data-free burgers1d losses on the Q1 space-time grid (burgers_kernels.hpp), fields plain fp32
// [b, 1, nt, nx] on [0, 1] x [0, T]:
//   residual      J = (1 / (hx ht)) sum over the test nodes (t > 0, x > 0) of R_i^2, R the Galerkin
//                 (weak-form) residual: the discrete L2 norm of the PDE residual; any nu >= 0.
//   least_squares J = integral of (u_t + u u_x)^2 by 2 x 2 Gauss: the strong form, nu = 0 only (a Q1
//                 field has no u_xx inside its elements).
// With the penalty boundary treatment it adds boundary_factor * (hx sum_j (u(x_j, 0) - b(x_j))^2 +
// ht sum_{n >= 1} u(0, t_n)^2); with the exact one the lift imposes those values. The arithmetic is
// fp64 and bitwise the same on any number of OpenMP threads.
#pragma once

#include <vector>

#include "config/deck.hpp"
#include "core/tensor.hpp"

namespace pdegen {

class BurgersLoss {
 public:
  BurgersLoss(LossKind kind, const BurgersSettings& settings);

  // The SUM over the b samples of J(u_s); `input` is the network input [b, c, nt, nx], whose channel 0
  // holds b(x) in every time row.
  // With `du`, also du = grad_scale * dJ/du (written in place when *du already is a plain fp32 tensor
  // of u's shape, otherwise replaced); with `per_sample`, the b values J(u_s).
  double evaluate(const Tensor& u, const Tensor& input, double grad_scale, Tensor* du,
                  std::vector<double>* per_sample) const;

 private:
  // One sample, one term each; `du` may be null.
  double galerkin(const float* u, int nx, int nt, double grad_scale, float* du) const;
  double least_squares(const float* u, int nx, int nt, double grad_scale, float* du) const;
  double penalty(const float* u, const float* b, int nx, int nt, double grad_scale, float* du) const;
  // u, input (and du) on the GPU: burgers_loss_cuda.cu, the same element arithmetic.
  double evaluate_cuda(const Tensor& u, const Tensor& input, double grad_scale, Tensor* du,
                       std::vector<double>* per_sample) const;

  LossKind kind_;
  BurgersSettings settings_;
};

}  // namespace pdegen

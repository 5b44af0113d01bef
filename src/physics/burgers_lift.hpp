// The exact initial and inflow conditions of burgers1d: u = v with row t = 0 set to b(x) (the input's
// channel 0) and column x = 0 above it set to 0; the adjoint zeroes the gradient on those nodes (b is
// data: no gradient). Fields plain fp32 [b, 1, nt, nx], inputs [b, c, nt, nx], on the CPU or the GPU.
#pragma once

#include "core/tensor.hpp"

namespace pdegen {

class BurgersLift {
 public:
  Tensor forward(const Tensor& v, const Tensor& input) const;
  Tensor backward(const Tensor& du) const;

 private:
  // Row t = 0 of each sample := the input's channel 0 row 0 (zero when `input` is null), column x = 0
  // of rows t > 0 := 0.
  static void set_boundary(Tensor& u, const Tensor* input);
  static void set_boundary_cuda(Tensor& u, const Tensor* input);  // burgers_lift_cuda.cu
};

}  // namespace pdegen

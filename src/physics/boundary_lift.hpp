// Exact Dirichlet conditions for poisson2d and poisson3d: u = m * v + (1 - m) * g with m = 0 on the
// x = 0 and x = 1 nodes (the first and last of every x line) and 1 elsewhere, g = `left` at x = 0 and `right`
// at x = 1 (1 and 0). The network output v then only has to be right inside; the loss never sees
// a wrong boundary value.
#pragma once

#include "core/tensor.hpp"

namespace pdegen {

class BoundaryLift {
 public:
  explicit BoundaryLift(float left = 1.0f, float right = 0.0f) : left_(left), right_(right) {}

  // v, du: plain fp32 [b, 1, Ny, Nx] or [b, 1, Nz, Ny, Nx], Nx >= 2, on the CPU or the GPU (results on the
  // same device).
  Tensor forward(const Tensor& v) const;    // u = m v + (1 - m) g
  Tensor backward(const Tensor& du) const;  // dv = m du (g is data: no gradient)
  // The same in place, for callers that own the buffer.
  void forward_inplace(Tensor& v) const;
  void backward_inplace(Tensor& du) const;
  // forward() of a box of the domain on the host: only the x = 0 nodes when the box holds them
  // (`holds_left`), only the x = 1 nodes when `holds_right`; elsewhere u = v.
  Tensor forward_box(const Tensor& v, bool holds_left, bool holds_right) const;

 private:
  // Overwrites the x = 0 and x = 1 nodes of every x line with the given values.
  static void set_columns(Tensor& t, float left, float right);
  // The host loop: the first column when `left` is given, the last when `right` is.
  static void set_columns_host(Tensor& t, const float* left, const float* right);
  static void set_columns_cuda(Tensor& t, float left, float right);  // boundary_lift_cuda.cu

  float left_, right_;
};

}  // namespace pdegen

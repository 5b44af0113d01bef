// BoundaryLift: m is 0 or 1, so m v + (1 - m) g is v with the first and last node of every x line
// overwritten, exactly, and the backward is the gradient with those nodes zeroed.
#include "physics/boundary_lift.hpp"

#include "core/dispatch.hpp"

namespace pdegen {

namespace {
void check_field(const Tensor& t, const char* what) {
  PDEGEN_CHECK((t.rank() == 4 || t.rank() == 5) && t.dim(1) == 1 && t.dim(t.rank() - 1) >= 2 &&
                   t.is_plain() && t.dtype() == DType::f32,
               "boundary lift {} must be a plain fp32 [b, 1, Ny, Nx] or [b, 1, Nz, Ny, Nx] tensor with Nx >= "
               "2, got {}",
               what, t.describe());
}
}  // namespace

void BoundaryLift::set_columns(Tensor& t, float left, float right) {
  if (t.device() == Device::cuda) {
    PDEGEN_DISPATCH(t.device(), (void)0, set_columns_cuda(t, left, right));
    return;
  }
  set_columns_host(t, &left, &right);
}

void BoundaryLift::set_columns_host(Tensor& t, const float* left, const float* right) {
  const int64_t nx = t.dim(t.rank() - 1), rows = t.numel() / nx;
  float* p = t.data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    if (left) p[r * nx] = *left;
    if (right) p[r * nx + nx - 1] = *right;
  }
}

Tensor BoundaryLift::forward(const Tensor& v) const {
  check_field(v, "input");
  Tensor u = v.clone();
  set_columns(u, left_, right_);
  return u;
}

Tensor BoundaryLift::backward(const Tensor& du) const {
  check_field(du, "gradient");
  Tensor dv = du.clone();
  set_columns(dv, 0.0f, 0.0f);
  return dv;
}

Tensor BoundaryLift::forward_box(const Tensor& v, bool holds_left, bool holds_right) const {
  PDEGEN_CHECK((v.rank() == 4 || v.rank() == 5) && v.dim(1) == 1 && v.is_plain() && v.dtype() == DType::f32 &&
                   v.device() == Device::cpu,
               "boundary lift of a box takes a plain fp32 host [b, 1, (Nz,) Ny, Nx] tensor, got {}",
               v.describe());
  Tensor u = v.clone();
  set_columns_host(u, holds_left ? &left_ : nullptr, holds_right ? &right_ : nullptr);
  return u;
}

void BoundaryLift::forward_inplace(Tensor& v) const {
  check_field(v, "input");
  set_columns(v, left_, right_);
}

void BoundaryLift::backward_inplace(Tensor& du) const {
  check_field(du, "gradient");
  set_columns(du, 0.0f, 0.0f);
}

}  // namespace pdegen

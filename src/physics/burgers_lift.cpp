// BurgersLift (see burgers_lift.hpp): overwriting the fixed nodes is the whole lift, exactly.
#include "physics/burgers_lift.hpp"

#include "core/dispatch.hpp"

namespace pdegen {

namespace {
void check_field(const Tensor& t, const char* what) {
  PDEGEN_CHECK(t.rank() == 4 && t.dim(1) == 1 && t.is_plain() && t.dtype() == DType::f32,
               "burgers1d lift {} must be a plain fp32 [b, 1, nt, nx] tensor, got {}", what, t.describe());
}
}  // namespace

void BurgersLift::set_boundary(Tensor& u, const Tensor* input) {
  if (u.device() == Device::cuda) {
    PDEGEN_DISPATCH(u.device(), (void)0, set_boundary_cuda(u, input));
    return;
  }
  const int64_t nt = u.dim(2), nx = u.dim(3), plane = nt * nx;
  for (int64_t s = 0; s < u.dim(0); ++s) {
    float* us = u.data<float>() + s * plane;
    const float* b = input != nullptr ? input->data<float>() + s * input->dim(1) * plane : nullptr;
    for (int64_t j = 0; j < nx; ++j) us[j] = b != nullptr ? b[j] : 0.0f;
    for (int64_t n = 1; n < nt; ++n) us[n * nx] = 0.0f;
  }
}

Tensor BurgersLift::forward(const Tensor& v, const Tensor& input) const {
  check_field(v, "output");
  PDEGEN_CHECK(input.rank() == 4 && input.dim(0) == v.dim(0) && input.dim(2) == v.dim(2) &&
                   input.dim(3) == v.dim(3) && input.is_plain() && input.dtype() == DType::f32 &&
                   input.device() == v.device(),
               "burgers1d lift input {} for an output {}", input.describe(), v.describe());
  Tensor u = v.clone();
  set_boundary(u, &input);
  return u;
}

Tensor BurgersLift::backward(const Tensor& du) const {
  check_field(du, "gradient");
  Tensor dv = du.clone();
  set_boundary(dv, nullptr);
  return dv;
}

}  // namespace pdegen

// Activation: names, FLOP count and backend dispatch.
#include "nn/activation.hpp"

#include <array>
#include <utility>

namespace pdegen {

namespace {
constexpr std::array<std::pair<std::string_view, ActivationKind>, 6> names = {{
    {"identity", ActivationKind::identity},
    {"relu", ActivationKind::relu},
    {"leaky_relu", ActivationKind::leaky_relu},
    {"tanh", ActivationKind::tanh},
    {"silu", ActivationKind::silu},
    {"sigmoid", ActivationKind::sigmoid},
}};
}  // namespace

ActivationKind parse_activation(const std::string& name) {
  for (const auto& [n, k] : names)
    if (n == name) return k;
  throw UserError(fmt::format(
      "unknown activation '{}' (expected identity, relu, leaky_relu, tanh, silu or sigmoid)", name));
}

std::string_view activation_name(ActivationKind k) {
  for (const auto& [n, kind] : names)
    if (kind == k) return n;
  return "?";
}

Flops Activation::flops(const Shape& in) const {
  const double n = static_cast<double>(in.numel());
  return {n, n, 0};
}

void Activation::keep_for_backward(const Tensor& x, const Tensor& y) {
  x_ = activation_backward_reads_input(kind_) ? x : Tensor();
  y_ = activation_backward_reads_output(kind_) ? y : Tensor();
  sign_bits_ = Tensor();  // the CPU forwards set it after this where they keep only the sign
  shape_ = x.shape();
  channel_block_ = x.channel_block();
  dtype_ = x.dtype();
  has_forward_ = true;
}

void Activation::check_gradient(const Tensor& dy) const {
  PDEGEN_CHECK(has_forward_, "activation backward without a forward");
  PDEGEN_CHECK(dy.shape() == shape_ && dy.channel_block() == channel_block_ && dy.dtype() == dtype_,
               "activation backward got {}, forward saw {} {} in channel block {}", dy.describe(),
               dtype_name(dtype_), shape_.str(), channel_block_);
}

Tensor Activation::forward(const Tensor& x, Mode) {
  return PDEGEN_DISPATCH(x.device(), forward_cpu(x), forward_cuda(x));
}

Tensor Activation::backward(const Tensor& dy) {
  return PDEGEN_DISPATCH(dy.device(), backward_cpu(dy), backward_cuda(dy));
}

bool Activation::derivative_is_sign_only() const {
  return kind_ == ActivationKind::relu || (kind_ == ActivationKind::leaky_relu && alpha_ >= 0.0f);
}

bool Activation::runs_in_place() const {
  return derivative_is_sign_only() || kind_ == ActivationKind::identity || kind_ == ActivationKind::tanh ||
         kind_ == ActivationKind::sigmoid;
}

void Activation::set_keeps_sign_only(bool on) {
  PDEGEN_CHECK(!on || derivative_is_sign_only(),
               "activation {}: the derivative needs more than the sign of x", kind());
  keeps_sign_only_ = on;
}

Tensor Activation::forward_in_place(const Tensor& x, Mode mode) {
  if (!runs_in_place()) return forward(x, mode);
  return PDEGEN_DISPATCH(x.device(), forward_in_place_cpu(x), forward_cuda(x));
}

Tensor Activation::backward_in_place(const Tensor& dy) {
  return PDEGEN_DISPATCH(dy.device(), backward_in_place_cpu(dy), backward_cuda(dy));
}

void Activation::release_saved() {
  x_ = Tensor();
  y_ = Tensor();
  sign_bits_ = Tensor();
  has_forward_ = false;
}

}  // namespace pdegen

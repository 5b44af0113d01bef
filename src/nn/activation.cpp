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

}  // namespace pdegen

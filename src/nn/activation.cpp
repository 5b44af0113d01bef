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

Tensor Activation::forward(const Tensor& x, Mode) {
  return PDEGEN_DISPATCH(x.device(), forward_cpu(x), forward_cuda(x));
}

Tensor Activation::backward(const Tensor& dy) {
  return PDEGEN_DISPATCH(dy.device(), backward_cpu(dy), backward_cuda(dy));
}

}  // namespace pdegen

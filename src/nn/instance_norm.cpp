// InstanceNorm: parameters, input checks, FLOP count and backend dispatch.
#include "nn/instance_norm.hpp"

namespace pdegen {

InstanceNorm::InstanceNorm(std::string name, const InstanceNormConfig& config, ParameterRegistry& registry)
    : name_(std::move(name)), config_(config), registry_(&registry) {
  PDEGEN_CHECK(config_.channels > 0, "instance norm '{}' needs channels > 0, got {}", name_,
               config_.channels);
  PDEGEN_CHECK(config_.eps > 0, "instance norm '{}' needs eps > 0, got {}", name_, config_.eps);
  if (config_.affine) {
    weight_id_ = registry.add(name_ + ".weight", Shape{config_.channels}, ParamInit::constant_value(1));
    bias_id_ = registry.add(name_ + ".bias", Shape{config_.channels}, ParamInit::constant_value(0));
  }
}

Flops InstanceNorm::flops(const Shape& in) const {
  const double n = static_cast<double>(in.numel());
  return {5 * n, 8 * n, 0};
}

Tensor InstanceNorm::forward(const Tensor& x, Mode) {
  PDEGEN_CHECK(x.rank() >= 3 && x.dim(1) == config_.channels,
               "instance norm '{}' expects N, {}, spatial... input, got {}", name_, config_.channels,
               x.describe());
  // fp16/bf16 activations are storage types (computed in fp32); the CPU has no fp16 layers.
  PDEGEN_CHECK(is_storage_type(x.dtype()) && (x.device() == Device::cuda || x.dtype() != DType::f16),
               "instance norm '{}' takes fp32 or bf16 activations (fp16 only on the GPU), got {}", name_,
               x.describe());
  return PDEGEN_DISPATCH(x.device(), forward_cpu(x), forward_cuda(x));
}

Tensor InstanceNorm::backward(const Tensor& dy) {
  PDEGEN_CHECK(x_.defined(), "instance norm '{}' backward before forward", name_);
  PDEGEN_CHECK(dy.shape() == x_.shape() && dy.dtype() == x_.dtype(),
               "instance norm '{}' backward got {}, forward saw {}", name_, dy.describe(), x_.describe());
  return PDEGEN_DISPATCH(dy.device(), backward_cpu(dy), backward_cuda(dy));
}

}  // namespace pdegen

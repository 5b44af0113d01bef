// BatchNorm: parameters, running statistics, input checks, FLOP count and backend dispatch.
#include "nn/batch_norm.hpp"

#include "nn/norm_kernels.hpp"

namespace pdegen {

BatchNorm::BatchNorm(std::string name, const BatchNormConfig& config, ParameterRegistry& registry)
    : name_(std::move(name)), config_(config), registry_(&registry) {
  PDEGEN_CHECK(config_.channels > 0, "batch norm '{}' needs channels > 0, got {}", name_, config_.channels);
  PDEGEN_CHECK(config_.eps > 0, "batch norm '{}' needs eps > 0, got {}", name_, config_.eps);
  PDEGEN_CHECK(config_.momentum >= 0 && config_.momentum <= 1, "batch norm '{}' momentum {} outside [0, 1]",
               name_, config_.momentum);
  if (config_.affine) {
    weight_id_ = registry.add(name_ + ".weight", Shape{config_.channels}, ParamInit::constant_value(1));
    bias_id_ = registry.add(name_ + ".bias", Shape{config_.channels}, ParamInit::constant_value(0));
  }
  running_mean_ = Tensor::zeros(Shape{config_.channels});
  running_var_ = Tensor::empty(Shape{config_.channels});
  running_var_.fill(1.0);
}

void BatchNorm::channel_statistics(Mode mode, std::vector<double>& sums, std::vector<double>& mean,
                                   std::vector<double>& inv_std) {
  const int64_t C = config_.channels;
  const auto Cs = static_cast<size_t>(C);
  mean.assign(Cs, 0.0);
  inv_std.assign(Cs, 0.0);
  // Running statistics stay on the host on every backend (C values; checkpoints read them there).
  float* running_mean = running_mean_.data<float>();
  float* running_var = running_var_.data<float>();
  if (mode == Mode::eval) {
    for (size_t c = 0; c < Cs; ++c) {
      mean[c] = running_mean[c];
      inv_std[c] = norm_inv_std(running_var[c], config_.eps);
    }
    count_ = 0;
    return;
  }
  if (allreduce_) allreduce_(sums.data(), static_cast<int>(2 * C + 1));
  const double count = sums[2 * Cs];
  PDEGEN_CHECK(count > 1, "batch norm '{}' in train mode needs more than one value per channel, got {}",
               name_, count);
  const double m = config_.momentum;
  for (size_t c = 0; c < Cs; ++c) {
    const double var = norm_biased_var(sums[c], sums[c + Cs], count);
    mean[c] = sums[c] / count;
    inv_std[c] = norm_inv_std(var, config_.eps);
    running_mean[c] = static_cast<float>((1 - m) * running_mean[c] + m * mean[c]);
    running_var[c] = static_cast<float>((1 - m) * running_var[c] + m * var * count / (count - 1));
  }
  count_ = count;
}

void BatchNorm::check_input(const Tensor& x) const {
  PDEGEN_CHECK(x.rank() >= 2 && x.dim(1) == config_.channels,
               "batch norm '{}' expects N, {}, ... input, got {}", name_, config_.channels, x.describe());
  // fp16/bf16 activations are storage types (computed in fp32); the CPU has no fp16 layers.
  PDEGEN_CHECK(is_storage_type(x.dtype()) && (x.device() == Device::cuda || x.dtype() != DType::f16),
               "batch norm '{}' takes fp32 or bf16 activations (fp16 only on the GPU), got {}", name_,
               x.describe());
}

Flops BatchNorm::flops(const Shape& in) const {
  const double n = static_cast<double>(in.numel());
  return {5 * n, 8 * n, 0};
}

Tensor BatchNorm::forward(const Tensor& x, Mode mode) {
  check_input(x);
  return PDEGEN_DISPATCH(x.device(), forward_cpu(x, mode), forward_cuda(x, mode));
}

Tensor BatchNorm::backward(const Tensor& dy) {
  PDEGEN_CHECK(x_.defined(), "batch norm '{}' backward before forward", name_);
  PDEGEN_CHECK(dy.shape() == x_.shape() && dy.dtype() == x_.dtype(),
               "batch norm '{}' backward got {}, forward saw {}", name_, dy.describe(), x_.describe());
  return PDEGEN_DISPATCH(dy.device(), backward_cpu(dy), backward_cuda(dy));
}

}  // namespace pdegen

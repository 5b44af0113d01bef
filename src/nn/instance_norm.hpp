// Instance normalisation, as PyTorch's InstanceNorm2d/3d with its defaults: each (sample, channel)
// is normalised over space with its own mean and biased variance, in train and eval mode alike (no
// running statistics), optionally followed by a learnable per-channel gamma and beta. The output,
// and dx, keep the input's layout (plain or channel-blocked).
#pragma once

#include <string>
#include <vector>

#include "core/parameter.hpp"
#include "nn/layer.hpp"

namespace pdegen {

struct InstanceNormConfig {
  int64_t channels = 0;
  double eps = 1e-5;
  bool affine = false;  // PyTorch's default; true adds gamma (weight) and beta (bias)
};

class InstanceNorm final : public Layer {
 public:
  // With affine, registers "<name>.weight" (gamma, init 1) and "<name>.bias" (beta, init 0), [C].
  InstanceNorm(std::string name, const InstanceNormConfig& config, ParameterRegistry& registry);

  std::string_view kind() const override { return "instance_norm"; }
  // Input N, C, [D,] H, W in any layout, fp32 (on the GPU also fp16/bf16, computed in fp32; y and dx
  // keep the input's type). `mode` changes nothing.
  Tensor forward(const Tensor& x, Mode mode) override;
  // Accumulates dgamma, dbeta (with affine) and announces them ready before computing dx.
  Tensor backward(const Tensor& dy) override;
  Shape output_shape(const Shape& in) const override { return in; }
  // About 5 flops per element forward and 8 backward (dgamma and dbeta included in backward_data).
  Flops flops(const Shape& in) const override;

  const std::string& name() const { return name_; }
  const InstanceNormConfig& config() const { return config_; }

 private:
  Tensor forward_cpu(const Tensor& x);
  Tensor backward_cpu(const Tensor& dy);
  Tensor forward_cuda(const Tensor& x);
  Tensor backward_cuda(const Tensor& dy);

  std::string name_;
  InstanceNormConfig config_;
  ParameterRegistry* registry_;
  ParameterRegistry::Id weight_id_ = -1, bias_id_ = -1;

  // The last forward's input and its per-(n, c) statistics, indexed n * C + c.
  Tensor x_;
  std::vector<float> mean_;
  std::vector<double> inv_std_;
};

}  // namespace pdegen

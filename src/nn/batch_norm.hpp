// Batch normalisation over N and space, per channel, as PyTorch's BatchNorm2d/3d, written by hand
// (not oneDNN's) because the synchronized variant needs the global statistics in forward AND the
// global gradient sums in backward. Both pass through one hook, StatsAllreduce, which data-parallel
// training sets to an MPI/NCCL allreduce; unset, the layer is ordinary local batch norm.
//
// Train mode normalises with the batch mean and biased variance and updates the running statistics
// with `momentum` (running_var from the unbiased variance, as PyTorch). Eval mode normalises with the
// running statistics; its backward is the exact gradient with those statistics held constant. The
// output, and dx, keep the input's layout (plain or channel-blocked).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/parameter.hpp"
#include "nn/layer.hpp"

namespace pdegen {

struct BatchNormConfig {
  int64_t channels = 0;
  double eps = 1e-5;
  double momentum = 0.1;  // running = (1 - momentum) * running + momentum * batch
  bool affine = true;     // learnable gamma (weight) and beta (bias)
};

// Sums a small vector of doubles over all ranks, in place. Called only in train mode, by every rank
// in the same order (it is a collective):
//   forward,  once, on [sum_c(x) for each c, sum_c(x^2) for each c, element count]  (2C + 1 values)
//   backward, once, on [sum_c(dy) for each c, sum_c(dy * xhat) for each c]          (2C values)
// Leaving it unset is the local identity (one rank).
using StatsAllreduce = std::function<void(double* data, int count)>;

class BatchNorm final : public Layer {
 public:
  // With affine, registers "<name>.weight" (gamma, init 1) and "<name>.bias" (beta, init 0), [C].
  BatchNorm(std::string name, const BatchNormConfig& config, ParameterRegistry& registry);

  void set_stats_allreduce(StatsAllreduce f) { allreduce_ = std::move(f); }

  // fp32 [C] buffers, not parameters (checkpoints save them): mean starts at 0, variance at 1.
  Tensor& running_mean() { return running_mean_; }
  Tensor& running_var() { return running_var_; }

  std::string_view kind() const override { return "batch_norm"; }
  // Input N, C, [D,] H, W (or N, C) in any layout, fp32 (on the GPU also fp16/bf16, computed in fp32;
  // y and dx keep the input's type). Train mode needs more than one element per channel in the
  // global batch (the unbiased variance divides by count - 1).
  Tensor forward(const Tensor& x, Mode mode) override;
  // Accumulates dgamma and dbeta from this rank's elements only (the gradient reducer sums them over
  // ranks) and announces them ready before computing dx, which uses the global sums.
  Tensor backward(const Tensor& dy) override;
  Shape output_shape(const Shape& in) const override { return in; }
  // About 5 flops per element forward (statistics, normalise, affine) and 8 backward; dgamma and
  // dbeta come out of the sums dx needs anyway, so they are counted in backward_data.
  Flops flops(const Shape& in) const override;

  const std::string& name() const { return name_; }
  const BatchNormConfig& config() const { return config_; }

 private:
  Tensor forward_cpu(const Tensor& x, Mode mode);
  Tensor backward_cpu(const Tensor& dy);
  Tensor forward_cuda(const Tensor& x, Mode mode);
  Tensor backward_cuda(const Tensor& dy);
  void check_input(const Tensor& x) const;
  // Both backends: per-channel mean and 1/std for this forward. Train mode: from `sums` ([sum x..,
  // sum x^2.., count] over this rank), reduced over ranks by the hook, updating the running
  // statistics; eval mode: from the running statistics (`sums` unused). Sets count_.
  void channel_statistics(Mode mode, std::vector<double>& sums, std::vector<double>& mean,
                          std::vector<double>& inv_std);

  std::string name_;
  BatchNormConfig config_;
  ParameterRegistry* registry_;
  ParameterRegistry::Id weight_id_ = -1, bias_id_ = -1;
  StatsAllreduce allreduce_;
  Tensor running_mean_, running_var_;

  // What the last forward used, for backward: its input, mode and per-channel statistics (global
  // ones in train mode).
  Tensor x_;
  Mode mode_ = Mode::train;
  std::vector<float> mean_;
  std::vector<double> inv_std_;
  double count_ = 0;
};

}  // namespace pdegen

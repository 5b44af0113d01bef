// Dynamic loss scaling for fp16/bf16 training: the loss (and so every gradient) is multiplied by a
// scale large enough that small fp16 gradients do not flush to zero; before the optimizer step the
// flat fp32 gradient buffer is divided by it again and checked for inf/nan. A step whose gradients
// overflowed is skipped and the scale halved; after `growth_interval` clean steps in a row the scale
// doubles, so it tracks the largest scale the gradients tolerate (PyTorch's GradScaler rules).
//
// The scale is the same on every rank as long as every rank feeds update() the same overflow flag:
// check the gradients after the reducer has summed them (an inf anywhere is then an inf everywhere).
#pragma once

#include <cstdint>

#include "config/deck.hpp"
#include "core/tensor.hpp"

namespace pdegen {

// The deck's loss_scaling section (config/deck.hpp); LossScaler ignores `enabled`.
using LossScalerConfig = LossScalingConfig;

class LossScaler {
 public:
  // Throws UserError for factors or bounds that would not make a scale (growth <= 1, backoff not in
  // (0, 1), interval < 1, min > initial or initial > max, non-positive min).
  explicit LossScaler(const LossScalerConfig& config = {});

  // What to multiply the loss (or the loss gradient) by this step.
  double scale() const { return scale_; }
  // Clean steps since the last growth or overflow.
  int64_t clean_steps() const { return clean_steps_; }
  // Steps skipped for overflow since construction.
  int64_t skipped_steps() const { return skipped_steps_; }
  const LossScalerConfig& config() const { return config_; }

  // Ends a step: with `found_overflow` the scale backs off and the answer is false (skip the
  // optimizer step); otherwise the clean count grows, the scale grows when it reaches the interval,
  // and the answer is true (take the step).
  bool update(bool found_overflow);

  // Checkpoint state (scale, clean_steps); restore() checks the scale against the bounds.
  void restore(double scale, int64_t clean_steps);

 private:
  LossScalerConfig config_;
  double scale_;
  int64_t clean_steps_ = 0;
  int64_t skipped_steps_ = 0;
};

// Multiplies every element of a flat fp32 buffer by inv_scale in place (on its device) and returns
// true when any element is inf or nan. Overflowed buffers are multiplied too: their step is skipped
// anyway, and one pass reads every value exactly once. On the GPU this waits for the answer.
bool unscale_and_check(Tensor& grads, double inv_scale);

// True when a flat fp32 buffer holds an inf or a nan; its values stay as they are (a factor of 1).
inline bool has_non_finite(Tensor& t) { return unscale_and_check(t, 1.0); }

// The CPU loop and the CUDA kernel behind unscale_and_check.
bool unscale_and_check_cpu(float* data, int64_t n, float inv_scale);
#if defined(PDEGEN_HAVE_CUDA)
bool unscale_and_check_cuda(float* data, int64_t n, float inv_scale);
#endif

}  // namespace pdegen

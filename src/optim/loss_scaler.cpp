// LossScaler's rules and the CPU unscale loop (see loss_scaler.hpp).
#include "optim/loss_scaler.hpp"

#include <algorithm>
#include <cfloat>
#include <cmath>

namespace pdegen {

LossScaler::LossScaler(const LossScalerConfig& config) : config_(config), scale_(config.initial_scale) {
  const LossScalerConfig& c = config_;
  if (!(c.growth_factor > 1) || !(c.backoff_factor > 0 && c.backoff_factor < 1) || c.growth_interval < 1 ||
      !(c.min_scale > 0) || !(c.min_scale <= c.initial_scale && c.initial_scale <= c.max_scale))
    throw UserError(fmt::format(
        "loss scaling needs growth_factor > 1 (got {}), backoff_factor in (0, 1) (got {}), growth_interval "
        ">= 1 (got {}) and 0 < min_scale <= initial_scale <= max_scale (got {} <= {} <= {})",
        c.growth_factor, c.backoff_factor, c.growth_interval, c.min_scale, c.initial_scale, c.max_scale));
}

bool LossScaler::update(bool found_overflow) {
  if (found_overflow) {
    scale_ = std::max(scale_ * config_.backoff_factor, config_.min_scale);
    clean_steps_ = 0;
    ++skipped_steps_;
    return false;
  }
  if (++clean_steps_ >= config_.growth_interval) {
    scale_ = std::min(scale_ * config_.growth_factor, config_.max_scale);
    clean_steps_ = 0;
  }
  return true;
}

void LossScaler::restore(double scale, int64_t clean_steps) {
  PDEGEN_CHECK(scale >= config_.min_scale && scale <= config_.max_scale && clean_steps >= 0,
               "loss scale {} with {} clean steps outside [{}, {}]", scale, clean_steps, config_.min_scale,
               config_.max_scale);
  scale_ = scale;
  clean_steps_ = clean_steps;
}

bool unscale_and_check_cpu(float* data, int64_t n, float inv_scale) {
  // !(|v| <= FLT_MAX) is true for +-inf and for nan (every comparison with nan is false), and it
  // vectorises where std::isfinite would not.
  int bad = 0;
#pragma omp parallel for simd schedule(simd : static) reduction(| : bad)
  for (int64_t i = 0; i < n; ++i) {
    const float v = data[i];
    bad |= !(std::abs(v) <= FLT_MAX);
    data[i] = v * inv_scale;
  }
  return bad != 0;
}

bool unscale_and_check(Tensor& grads, double inv_scale) {
  PDEGEN_CHECK(grads.dtype() == DType::f32 && grads.is_plain(), "unscaling needs a plain fp32 buffer, got {}",
               grads.describe());
  const auto inv = static_cast<float>(inv_scale);
#if defined(PDEGEN_HAVE_CUDA)
  if (grads.device() == Device::cuda) return unscale_and_check_cuda(grads.data<float>(), grads.numel(), inv);
#endif
  PDEGEN_CHECK(grads.device() == Device::cpu, "unscaling on device '{}' needs the CUDA backend",
               device_name(grads.device()));
  return unscale_and_check_cpu(grads.data<float>(), grads.numel(), inv);
}

}  // namespace pdegen

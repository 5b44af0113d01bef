// BatchNorm on the GPU: the per-channel sums are reduced on the device (nn/norm_kernels.hpp,
// deterministic, in double), copied to the host, and everything per channel (the StatsAllreduce hook,
// mean, variance, running statistics, the folded coefficients) is the CPU's host arithmetic; the
// element-wise normalisation and gradient run as kernels. The hook works on host doubles, so each
// train-mode direction waits for its sums once; an allreduce on device buffers (NCCL) would remove
// that wait and needs a device variant of the hook. x, y, dy and dx may be fp32, fp16 or bf16 (one
// type per pass); the arithmetic, the statistics and the parameter gradients stay fp32 / double.
#include <vector>

#include "nn/batch_norm.hpp"
#include "nn/norm_kernels.hpp"

namespace pdegen {

Tensor BatchNorm::forward_cuda(const Tensor& x, Mode mode) {
  const int64_t C = config_.channels;
  const norm_cuda::Layout l = norm_cuda::layout_of(x);
  const norm_cuda::Slots slots{false, l.N, C};
  // Running statistics stay on the host (C values; checkpoints read them there).
  std::vector<double> mean, inv_std, stats;
  if (mode == Mode::train) {
    stats.assign(static_cast<size_t>(2 * C + 1), 0.0);  // the hook's forward layout
    norm_cuda::value_totals(slots, l, x, stats.data(), stats.data() + C);
    stats[static_cast<size_t>(2 * C)] = static_cast<double>(x.numel() / C);
  }
  channel_statistics(mode, stats, mean, inv_std);

  const std::vector<float> gamma =
      config_.affine ? norm_cuda::host_values(registry_->value(weight_id_)) : std::vector<float>();
  const std::vector<float> beta =
      config_.affine ? norm_cuda::host_values(registry_->value(bias_id_)) : std::vector<float>();
  std::vector<float> mean_f(static_cast<size_t>(C)), scale(static_cast<size_t>(C)),
      shift(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    const auto k = static_cast<size_t>(c);
    mean_f[k] = static_cast<float>(mean[k]);
    scale[k] = static_cast<float>((config_.affine ? gamma[k] : 1.0) * inv_std[k]);
    shift[k] = config_.affine ? beta[k] : 0.0f;
  }

  Tensor y = norm_cuda::normalize(slots, l, x, mean_f, scale, shift);

  x_ = x;
  mode_ = mode;
  mean_ = std::move(mean_f);
  inv_std_ = std::move(inv_std);
  return y;
}

Tensor BatchNorm::backward_cuda(const Tensor& dy) {
  const int64_t C = config_.channels;
  const norm_cuda::Layout l = norm_cuda::layout_of(x_), ldy = norm_cuda::layout_of(dy);
  const norm_cuda::Slots slots{false, l.N, C};
  const bool batch_statistics = mode_ == Mode::train;
  const Tensor d_mean = norm_cuda::upload(mean_);

  // [sum dy, sum dy * xhat] per channel: the hook's backward layout. Eval mode without affine
  // parameters needs neither.
  std::vector<double> sums(static_cast<size_t>(2 * C), 0.0);
  if (batch_statistics || config_.affine) {
    norm_cuda::grad_totals(slots, l, ldy, x_, dy, d_mean, sums.data(), sums.data() + C);
    for (int64_t c = 0; c < C; ++c) sums[static_cast<size_t>(C + c)] *= inv_std_[static_cast<size_t>(c)];
  }

  // Parameter gradients from this rank's elements, before the sums become global.
  if (config_.affine) {
    std::vector<float> dgamma(static_cast<size_t>(C)), dbeta(static_cast<size_t>(C));
    for (int64_t c = 0; c < C; ++c) {
      dgamma[static_cast<size_t>(c)] = static_cast<float>(sums[static_cast<size_t>(C + c)]);
      dbeta[static_cast<size_t>(c)] = static_cast<float>(sums[static_cast<size_t>(c)]);
    }
    norm_cuda::accumulate(registry_->grad(weight_id_), dgamma);
    norm_cuda::accumulate(registry_->grad(bias_id_), dbeta);
    registry_->grad_ready(bias_id_);
    registry_->grad_ready(weight_id_);
  }
  if (batch_statistics && allreduce_) allreduce_(sums.data(), static_cast<int>(2 * C));

  const std::vector<float> gamma =
      config_.affine ? norm_cuda::host_values(registry_->value(weight_id_)) : std::vector<float>();
  std::vector<float> a(static_cast<size_t>(C)), b(static_cast<size_t>(C)), c(static_cast<size_t>(C));
  for (int64_t ch = 0; ch < C; ++ch) {
    const auto k = static_cast<size_t>(ch);
    const NormBackwardCoeffs coeffs =
        norm_backward_coeffs(config_.affine ? gamma[k] : 1.0, inv_std_[k], sums[k],
                             sums[k + static_cast<size_t>(C)], count_, batch_statistics);
    a[k] = static_cast<float>(coeffs.a);
    b[k] = static_cast<float>(coeffs.b);
    c[k] = static_cast<float>(coeffs.c);
  }

  const Tensor d_a = norm_cuda::upload(a), d_b = norm_cuda::upload(b), d_c = norm_cuda::upload(c);
  return norm_cuda::normalize_backward(slots, l, ldy, x_, dy, d_mean, d_a, d_b, d_c);
}

}  // namespace pdegen

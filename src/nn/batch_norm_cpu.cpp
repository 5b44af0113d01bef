// BatchNorm on the CPU: each direction is two OpenMP passes over the tensor's contiguous rows with
// the channel-block lanes innermost (nn/norm_kernels.hpp): per-channel sums in double (the rows'
// statistics slot is their channel block), the hook, then the element-wise normalisation (forward)
// or gradient (backward).
#include <vector>

#include "nn/batch_norm.hpp"
#include "nn/norm_kernels.hpp"

namespace pdegen {

using norm_cpu::Tiling;

Tensor BatchNorm::forward_cpu(const Tensor& x_in, Mode mode) {
  const Tensor x = cpu::widened_to_fp32(x_in);
  const int64_t C = config_.channels;
  const Tiling t = norm_cpu::tiling_of(x);
  const int64_t blocks = C / t.block;
  const auto channel_slot = [blocks, B = t.block](int64_t row) { return row % blocks * B; };
  const float* xs = x.data<float>();
  std::vector<double> mean, inv_std, stats;
  if (mode == Mode::train) {
    stats.assign(static_cast<size_t>(2 * C + 1), 0.0);  // the hook's forward layout
    norm_cpu::sums_pass(t, channel_slot, xs, stats.data(), stats.data() + C);
    stats[static_cast<size_t>(2 * C)] = static_cast<double>(x.numel() / C);
  }
  channel_statistics(mode, stats, mean, inv_std);

  const float* gamma = config_.affine ? registry_->value(weight_id_).data<float>() : nullptr;
  const float* beta = config_.affine ? registry_->value(bias_id_).data<float>() : nullptr;
  std::vector<float> mean_f(static_cast<size_t>(C)), scale(static_cast<size_t>(C)),
      shift(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    const auto k = static_cast<size_t>(c);
    mean_f[k] = static_cast<float>(mean[k]);
    scale[k] = static_cast<float>((gamma ? gamma[c] : 1.0) * inv_std[k]);
    shift[k] = beta ? beta[c] : 0.0f;
  }

  Tensor y = Tensor::empty(x.shape(), DType::f32, x.device(), x.channel_block());
  float* ys = y.data<float>();
  norm_cpu::forward_pass(t, channel_slot, xs, ys, mean_f.data(), scale.data(), shift.data());

  x_ = x_in;
  mode_ = mode;
  mean_ = std::move(mean_f);
  inv_std_ = std::move(inv_std);
  return norm_cpu::narrowed_like(y, x_in);
}

Tensor BatchNorm::backward_cpu(const Tensor& dy_in) {
  const Tensor x = cpu::widened_to_fp32(x_);
  const Tensor dy = to_channel_block(cpu::widened_to_fp32(dy_in), x.channel_block());
  const int64_t C = config_.channels;
  const Tiling t = norm_cpu::tiling_of(x);
  const int64_t blocks = C / t.block;
  const auto channel_slot = [blocks, B = t.block](int64_t row) { return row % blocks * B; };
  const bool batch_statistics = mode_ == Mode::train;
  const float* xs = x.data<float>();
  const float* gs = dy.data<float>();

  // [sum dy, sum dy * xhat] per channel: the hook's backward layout. Eval mode without affine
  // parameters needs neither.
  std::vector<double> sums(static_cast<size_t>(2 * C), 0.0);
  if (batch_statistics || config_.affine) {
    norm_cpu::grad_sums_pass(t, channel_slot, xs, gs, mean_.data(), sums.data(), sums.data() + C);
    for (int64_t c = 0; c < C; ++c) sums[static_cast<size_t>(C + c)] *= inv_std_[static_cast<size_t>(c)];
  }

  // Parameter gradients from this rank's elements, before the sums become global.
  if (config_.affine) {
    float* dgamma = registry_->grad(weight_id_).data<float>();
    float* dbeta = registry_->grad(bias_id_).data<float>();
    for (int64_t c = 0; c < C; ++c) {
      dgamma[c] += static_cast<float>(sums[static_cast<size_t>(C + c)]);
      dbeta[c] += static_cast<float>(sums[static_cast<size_t>(c)]);
    }
    registry_->grad_ready(bias_id_);
    registry_->grad_ready(weight_id_);
  }
  if (batch_statistics && allreduce_) allreduce_(sums.data(), static_cast<int>(2 * C));

  const float* gamma = config_.affine ? registry_->value(weight_id_).data<float>() : nullptr;
  std::vector<float> a(static_cast<size_t>(C)), b(static_cast<size_t>(C)), c(static_cast<size_t>(C));
  for (int64_t ch = 0; ch < C; ++ch) {
    const auto k = static_cast<size_t>(ch);
    const NormBackwardCoeffs coeffs =
        norm_backward_coeffs(gamma ? gamma[ch] : 1.0, inv_std_[k], sums[k], sums[k + static_cast<size_t>(C)],
                             count_, batch_statistics);
    a[k] = static_cast<float>(coeffs.a);
    b[k] = static_cast<float>(coeffs.b);
    c[k] = static_cast<float>(coeffs.c);
  }

  Tensor dx = Tensor::empty(x.shape(), DType::f32, x.device(), x.channel_block());
  float* dxs = dx.data<float>();
  norm_cpu::backward_pass(t, channel_slot, xs, gs, dxs, mean_.data(), a.data(), b.data(), c.data());
  return norm_cpu::narrowed_like(dx, x_);
}

}  // namespace pdegen

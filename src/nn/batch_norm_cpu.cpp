// BatchNorm on the CPU: each direction is two OpenMP passes over the tensor's contiguous rows with
// the channel-block lanes innermost (nn/norm_kernels.hpp): per-channel sums in double, the hook,
// then the element-wise normalisation (forward) or gradient (backward).
#include <vector>

#include "backend/cpu/parallel.hpp"
#include "nn/batch_norm.hpp"
#include "nn/norm_kernels.hpp"

namespace pdegen {

namespace {

using norm_cpu::Tiling;

Tiling tiling_of(const Tensor& t) {
  const int64_t b = t.channel_block();
  return Tiling(t.dim(0) * (t.dim(1) / b), t.shape().spatial(), b);
}

// Per-channel totals of two per-lane sums over the whole tensor. `item_sums(item, first, second)`
// adds one work item's lanes into first[0, B) and second[0, B); the items' partial sums are then
// added in item order, so the totals do not depend on the thread count.
template <class F>
void channel_sums(const Tiling& t, int64_t channels, F&& item_sums, double* first, double* second) {
  const int64_t B = t.block, blocks = channels / B;
  std::vector<double> part(static_cast<size_t>(t.items() * 2 * B), 0.0);
  cpu::parallel_for(t.items(), [&](int64_t i) {
    double* p = part.data() + i * 2 * B;
    item_sums(i, p, p + B);
  });
  for (int64_t i = 0; i < t.items(); ++i) {
    const int64_t c0 = t.row(i) % blocks * B;
    const double* p = part.data() + i * 2 * B;
    for (int64_t l = 0; l < B; ++l) {
      first[c0 + l] += p[l];
      second[c0 + l] += p[B + l];
    }
  }
}

}  // namespace

Tensor BatchNorm::forward_cpu(const Tensor& x, Mode mode) {
  const int64_t C = config_.channels;
  const Tiling t = tiling_of(x);
  const int64_t blocks = C / t.block;
  const float* xs = x.data<float>();
  float* running_mean = running_mean_.data<float>();
  float* running_var = running_var_.data<float>();

  std::vector<double> mean(static_cast<size_t>(C)), inv_std(static_cast<size_t>(C));
  if (mode == Mode::train) {
    std::vector<double> stats(static_cast<size_t>(2 * C + 1), 0.0);  // the hook's forward layout
    norm_cpu::with_lanes(x.channel_block(), [&](auto lanes) {
      constexpr int L = decltype(lanes)::value;
      channel_sums(
          t, C,
          [&](int64_t i, double* sum, double* sum_sq) {
            norm_cpu::lane_sums<L>(xs + t.offset(i), t.count(i), sum, sum_sq);
          },
          stats.data(), stats.data() + C);
    });
    stats[static_cast<size_t>(2 * C)] = static_cast<double>(x.numel() / C);
    if (allreduce_) allreduce_(stats.data(), static_cast<int>(2 * C + 1));
    const double count = stats[static_cast<size_t>(2 * C)];
    PDEGEN_CHECK(count > 1, "batch norm '{}' in train mode needs more than one value per channel, got {}",
                 name_, count);
    const double m = config_.momentum;
    for (int64_t c = 0; c < C; ++c) {
      const auto k = static_cast<size_t>(c);
      const double var = norm_biased_var(stats[k], stats[k + static_cast<size_t>(C)], count);
      mean[k] = stats[k] / count;
      inv_std[k] = norm_inv_std(var, config_.eps);
      running_mean[c] = static_cast<float>((1 - m) * running_mean[c] + m * mean[k]);
      running_var[c] = static_cast<float>((1 - m) * running_var[c] + m * var * count / (count - 1));
    }
    count_ = count;
  } else {
    for (int64_t c = 0; c < C; ++c) {
      mean[static_cast<size_t>(c)] = running_mean[c];
      inv_std[static_cast<size_t>(c)] = norm_inv_std(running_var[c], config_.eps);
    }
    count_ = 0;
  }

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
  norm_cpu::with_lanes(x.channel_block(), [&](auto lanes) {
    constexpr int L = decltype(lanes)::value;
    cpu::parallel_for(t.items(), [&](int64_t i) {
      const int64_t c0 = t.row(i) % blocks * L;
      norm_cpu::lane_forward<L>(xs + t.offset(i), ys + t.offset(i), t.count(i), mean_f.data() + c0,
                                scale.data() + c0, shift.data() + c0);
    });
  });

  x_ = x;
  mode_ = mode;
  mean_ = std::move(mean_f);
  inv_std_ = std::move(inv_std);
  return y;
}

Tensor BatchNorm::backward_cpu(const Tensor& dy_in) {
  const Tensor dy = to_channel_block(dy_in, x_.channel_block());
  const int64_t C = config_.channels;
  const Tiling t = tiling_of(x_);
  const int64_t blocks = C / t.block;
  const bool batch_statistics = mode_ == Mode::train;
  const float* xs = x_.data<float>();
  const float* gs = dy.data<float>();

  // [sum dy, sum dy * xhat] per channel: the hook's backward layout. Eval mode without affine
  // parameters needs neither.
  std::vector<double> sums(static_cast<size_t>(2 * C), 0.0);
  if (batch_statistics || config_.affine) {
    norm_cpu::with_lanes(x_.channel_block(), [&](auto lanes) {
      constexpr int L = decltype(lanes)::value;
      channel_sums(
          t, C,
          [&](int64_t i, double* sum_dy, double* sum_dy_xc) {
            norm_cpu::lane_grad_sums<L>(xs + t.offset(i), gs + t.offset(i), t.count(i),
                                        mean_.data() + t.row(i) % blocks * L, sum_dy, sum_dy_xc);
          },
          sums.data(), sums.data() + C);
    });
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

  Tensor dx = Tensor::empty(x_.shape(), DType::f32, x_.device(), x_.channel_block());
  float* dxs = dx.data<float>();
  norm_cpu::with_lanes(x_.channel_block(), [&](auto lanes) {
    constexpr int L = decltype(lanes)::value;
    cpu::parallel_for(t.items(), [&](int64_t i) {
      const int64_t c0 = t.row(i) % blocks * L;
      norm_cpu::lane_backward<L>(xs + t.offset(i), gs + t.offset(i), dxs + t.offset(i), t.count(i),
                                 mean_.data() + c0, a.data() + c0, b.data() + c0, c.data() + c0);
    });
  });
  return dx;
}

}  // namespace pdegen

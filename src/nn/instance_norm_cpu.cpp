// InstanceNorm on the CPU: the lane loops of nn/norm_kernels.hpp, with statistics per (sample,
// channel). Lane l of row r (= n * C/B + cb) is channel cb * B + l of sample n, whose statistics sit
// at n * C + cb * B + l = r * B + l: the per-(n, c) arrays are indexed like the rows themselves.
#include <vector>

#include "backend/cpu/parallel.hpp"
#include "nn/instance_norm.hpp"
#include "nn/norm_kernels.hpp"

namespace pdegen {

namespace {

using norm_cpu::Tiling;

Tiling tiling_of(const Tensor& t) {
  const int64_t b = t.channel_block();
  return Tiling(t.dim(0) * (t.dim(1) / b), t.shape().spatial(), b);
}

// Per-(n, c) totals of two per-lane sums: `item_sums(item, first, second)` adds one work item's lanes
// into first[0, B) and second[0, B); the chunks of a row are then added in order (deterministic for
// any thread count).
template <class F>
void instance_sums(const Tiling& t, F&& item_sums, double* first, double* second) {
  const int64_t B = t.block;
  std::vector<double> part(static_cast<size_t>(t.items() * 2 * B), 0.0);
  cpu::parallel_for(t.items(), [&](int64_t i) {
    double* p = part.data() + i * 2 * B;
    item_sums(i, p, p + B);
  });
  for (int64_t i = 0; i < t.items(); ++i) {
    const int64_t k0 = t.row(i) * B;
    const double* p = part.data() + i * 2 * B;
    for (int64_t l = 0; l < B; ++l) {
      first[k0 + l] += p[l];
      second[k0 + l] += p[B + l];
    }
  }
}

}  // namespace

Tensor InstanceNorm::forward_cpu(const Tensor& x) {
  const int64_t N = x.dim(0), C = config_.channels, NC = N * C;
  const auto nc = static_cast<size_t>(NC);
  const double count = static_cast<double>(x.shape().spatial());
  const Tiling t = tiling_of(x);
  const float* xs = x.data<float>();

  std::vector<double> sum(nc, 0.0), sum_sq(nc, 0.0);
  norm_cpu::with_lanes(x.channel_block(), [&](auto lanes) {
    constexpr int L = decltype(lanes)::value;
    instance_sums(
        t,
        [&](int64_t i, double* s, double* q) { norm_cpu::lane_sums<L>(xs + t.offset(i), t.count(i), s, q); },
        sum.data(), sum_sq.data());
  });

  const float* gamma = config_.affine ? registry_->value(weight_id_).data<float>() : nullptr;
  const float* beta = config_.affine ? registry_->value(bias_id_).data<float>() : nullptr;
  std::vector<float> mean(nc), scale(nc), shift(nc);
  std::vector<double> inv_std(nc);
  for (int64_t k = 0; k < NC; ++k) {
    const auto j = static_cast<size_t>(k);
    const int64_t c = k % C;
    inv_std[j] = norm_inv_std(norm_biased_var(sum[j], sum_sq[j], count), config_.eps);
    mean[j] = static_cast<float>(sum[j] / count);
    scale[j] = static_cast<float>((gamma ? gamma[c] : 1.0) * inv_std[j]);
    shift[j] = beta ? beta[c] : 0.0f;
  }

  Tensor y = Tensor::empty(x.shape(), DType::f32, x.device(), x.channel_block());
  float* ys = y.data<float>();
  norm_cpu::with_lanes(x.channel_block(), [&](auto lanes) {
    constexpr int L = decltype(lanes)::value;
    cpu::parallel_for(t.items(), [&](int64_t i) {
      const int64_t k0 = t.row(i) * L;
      norm_cpu::lane_forward<L>(xs + t.offset(i), ys + t.offset(i), t.count(i), mean.data() + k0,
                                scale.data() + k0, shift.data() + k0);
    });
  });

  x_ = x;
  mean_ = std::move(mean);
  inv_std_ = std::move(inv_std);
  return y;
}

Tensor InstanceNorm::backward_cpu(const Tensor& dy_in) {
  const Tensor dy = to_channel_block(dy_in, x_.channel_block());
  const int64_t N = x_.dim(0), C = config_.channels, NC = N * C;
  const auto nc = static_cast<size_t>(NC);
  const double count = static_cast<double>(x_.shape().spatial());
  const Tiling t = tiling_of(x_);
  const float* xs = x_.data<float>();
  const float* gs = dy.data<float>();

  std::vector<double> sum_dy(nc, 0.0), sum_dy_xhat(nc, 0.0);
  norm_cpu::with_lanes(x_.channel_block(), [&](auto lanes) {
    constexpr int L = decltype(lanes)::value;
    instance_sums(
        t,
        [&](int64_t i, double* s, double* q) {
          norm_cpu::lane_grad_sums<L>(xs + t.offset(i), gs + t.offset(i), t.count(i),
                                      mean_.data() + t.row(i) * L, s, q);
        },
        sum_dy.data(), sum_dy_xhat.data());
  });
  for (size_t j = 0; j < nc; ++j) sum_dy_xhat[j] *= inv_std_[j];

  if (config_.affine) {
    float* dgamma = registry_->grad(weight_id_).data<float>();
    float* dbeta = registry_->grad(bias_id_).data<float>();
    std::vector<double> dg(static_cast<size_t>(C), 0.0), db(static_cast<size_t>(C), 0.0);
    for (int64_t k = 0; k < NC; ++k) {
      dg[static_cast<size_t>(k % C)] += sum_dy_xhat[static_cast<size_t>(k)];
      db[static_cast<size_t>(k % C)] += sum_dy[static_cast<size_t>(k)];
    }
    for (int64_t c = 0; c < C; ++c) {
      dgamma[c] += static_cast<float>(dg[static_cast<size_t>(c)]);
      dbeta[c] += static_cast<float>(db[static_cast<size_t>(c)]);
    }
    registry_->grad_ready(bias_id_);
    registry_->grad_ready(weight_id_);
  }

  const float* gamma = config_.affine ? registry_->value(weight_id_).data<float>() : nullptr;
  std::vector<float> a(nc), b(nc), c(nc);
  for (int64_t k = 0; k < NC; ++k) {
    const auto j = static_cast<size_t>(k);
    const NormBackwardCoeffs coeffs =
        norm_backward_coeffs(gamma ? gamma[k % C] : 1.0, inv_std_[j], sum_dy[j], sum_dy_xhat[j], count, true);
    a[j] = static_cast<float>(coeffs.a);
    b[j] = static_cast<float>(coeffs.b);
    c[j] = static_cast<float>(coeffs.c);
  }

  Tensor dx = Tensor::empty(x_.shape(), DType::f32, x_.device(), x_.channel_block());
  float* dxs = dx.data<float>();
  norm_cpu::with_lanes(x_.channel_block(), [&](auto lanes) {
    constexpr int L = decltype(lanes)::value;
    cpu::parallel_for(t.items(), [&](int64_t i) {
      const int64_t k0 = t.row(i) * L;
      norm_cpu::lane_backward<L>(xs + t.offset(i), gs + t.offset(i), dxs + t.offset(i), t.count(i),
                                 mean_.data() + k0, a.data() + k0, b.data() + k0, c.data() + k0);
    });
  });
  return dx;
}

}  // namespace pdegen

// InstanceNorm on the CPU: the lane loops of nn/norm_kernels.hpp, with statistics per (sample,
// channel). Lane l of row r (= n * C/B + cb) is channel cb * B + l of sample n, whose statistics sit
// at n * C + cb * B + l = r * B + l: the per-(n, c) arrays are indexed like the rows themselves.
#include <vector>

#include "nn/instance_norm.hpp"
#include "nn/norm_kernels.hpp"

namespace pdegen {

namespace {

// The statistics of a tensor: one per (sample, channel), over `count` spatial positions, lane 0 of
// work-item row r at slot(r) = r * B.
struct Instances {
  int64_t C, NC;
  size_t nc;
  double count;
  norm_cpu::Tiling t;
  Instances(const Tensor& x, int64_t channels)
      : C(channels),
        NC(x.dim(0) * channels),
        nc(static_cast<size_t>(NC)),
        count(static_cast<double>(x.shape().spatial())),
        t(norm_cpu::tiling_of(x)) {}
  int64_t operator()(int64_t row) const { return row * t.block; }
};

}  // namespace

Tensor InstanceNorm::forward_cpu(const Tensor& x_in) {
  const Tensor x = cpu::widened_to_fp32(x_in);
  const Instances slots(x, config_.channels);
  const auto& [C, NC, nc, count, t] = slots;
  const float* xs = x.data<float>();

  std::vector<double> sum(nc, 0.0), sum_sq(nc, 0.0);
  norm_cpu::sums_pass(t, slots, xs, sum.data(), sum_sq.data());

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
  norm_cpu::forward_pass(t, slots, xs, ys, mean.data(), scale.data(), shift.data());

  x_ = x_in;
  mean_ = std::move(mean);
  inv_std_ = std::move(inv_std);
  return norm_cpu::narrowed_like(y, x_in);
}

Tensor InstanceNorm::backward_cpu(const Tensor& dy_in) {
  const Tensor x = cpu::widened_to_fp32(x_);
  const Tensor dy = to_channel_block(cpu::widened_to_fp32(dy_in), x.channel_block());
  const Instances slots(x, config_.channels);
  const auto& [C, NC, nc, count, t] = slots;
  const float* xs = x.data<float>();
  const float* gs = dy.data<float>();

  std::vector<double> sum_dy(nc, 0.0), sum_dy_xhat(nc, 0.0);
  norm_cpu::grad_sums_pass(t, slots, xs, gs, mean_.data(), sum_dy.data(), sum_dy_xhat.data());
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

  Tensor dx = Tensor::empty(x.shape(), DType::f32, x.device(), x.channel_block());
  float* dxs = dx.data<float>();
  norm_cpu::backward_pass(t, slots, xs, gs, dxs, mean_.data(), a.data(), b.data(), c.data());
  return norm_cpu::narrowed_like(dx, x_);
}

}  // namespace pdegen

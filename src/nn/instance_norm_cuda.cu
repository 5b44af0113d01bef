// InstanceNorm on the GPU: per-(sample, channel) sums reduced on the device (nn/norm_kernels.hpp,
// deterministic, in double) and copied to the host, the per-instance coefficients computed there with
// the CPU's arithmetic, the element-wise normalisation and gradient as kernels. x, y, dy and dx may
// be fp32, fp16 or bf16; the arithmetic, the statistics and the parameter gradients stay fp32 / double.
#include <vector>

#include "nn/instance_norm.hpp"
#include "nn/norm_kernels.hpp"

namespace pdegen {

Tensor InstanceNorm::forward_cuda(const Tensor& x) {
  const int64_t C = config_.channels;
  const norm_cuda::Layout l = norm_cuda::layout_of(x);
  const norm_cuda::Slots slots{true, l.N, C};
  const int64_t NC = l.N * C;
  const auto nc = static_cast<size_t>(NC);
  const double count = static_cast<double>(l.S);

  std::vector<double> sum(nc, 0.0), sum_sq(nc, 0.0);
  norm_cuda::value_totals(slots, l, x, sum.data(), sum_sq.data());

  const std::vector<float> gamma =
      config_.affine ? norm_cuda::host_values(registry_->value(weight_id_)) : std::vector<float>();
  const std::vector<float> beta =
      config_.affine ? norm_cuda::host_values(registry_->value(bias_id_)) : std::vector<float>();
  std::vector<float> mean(nc), scale(nc), shift(nc);
  std::vector<double> inv_std(nc);
  for (int64_t k = 0; k < NC; ++k) {
    const auto j = static_cast<size_t>(k);
    const auto c = static_cast<size_t>(k % C);
    inv_std[j] = norm_inv_std(norm_biased_var(sum[j], sum_sq[j], count), config_.eps);
    mean[j] = static_cast<float>(sum[j] / count);
    scale[j] = static_cast<float>((config_.affine ? gamma[c] : 1.0) * inv_std[j]);
    shift[j] = config_.affine ? beta[c] : 0.0f;
  }

  Tensor y = norm_cuda::normalize(slots, l, x, mean, scale, shift);

  x_ = x;
  mean_ = std::move(mean);
  inv_std_ = std::move(inv_std);
  return y;
}

Tensor InstanceNorm::backward_cuda(const Tensor& dy) {
  const int64_t C = config_.channels;
  const norm_cuda::Layout l = norm_cuda::layout_of(x_), ldy = norm_cuda::layout_of(dy);
  const norm_cuda::Slots slots{true, l.N, C};
  const int64_t NC = l.N * C;
  const auto nc = static_cast<size_t>(NC);
  const double count = static_cast<double>(l.S);
  const Tensor d_mean = norm_cuda::upload(mean_);

  std::vector<double> sum_dy(nc, 0.0), sum_dy_xhat(nc, 0.0);
  norm_cuda::grad_totals(slots, l, ldy, x_, dy, d_mean, sum_dy.data(), sum_dy_xhat.data());
  for (size_t j = 0; j < nc; ++j) sum_dy_xhat[j] *= inv_std_[j];

  if (config_.affine) {
    // Over the samples in order, in double, then one fp32 addition each: the CPU's arithmetic.
    std::vector<double> dg(static_cast<size_t>(C), 0.0), db(static_cast<size_t>(C), 0.0);
    for (int64_t k = 0; k < NC; ++k) {
      dg[static_cast<size_t>(k % C)] += sum_dy_xhat[static_cast<size_t>(k)];
      db[static_cast<size_t>(k % C)] += sum_dy[static_cast<size_t>(k)];
    }
    std::vector<float> dgamma(static_cast<size_t>(C)), dbeta(static_cast<size_t>(C));
    for (size_t c = 0; c < dgamma.size(); ++c) {
      dgamma[c] = static_cast<float>(dg[c]);
      dbeta[c] = static_cast<float>(db[c]);
    }
    norm_cuda::accumulate(registry_->grad(weight_id_), dgamma);
    norm_cuda::accumulate(registry_->grad(bias_id_), dbeta);
    registry_->grad_ready(bias_id_);
    registry_->grad_ready(weight_id_);
  }

  const std::vector<float> gamma =
      config_.affine ? norm_cuda::host_values(registry_->value(weight_id_)) : std::vector<float>();
  std::vector<float> a(nc), b(nc), c(nc);
  for (int64_t k = 0; k < NC; ++k) {
    const auto j = static_cast<size_t>(k);
    const NormBackwardCoeffs coeffs =
        norm_backward_coeffs(config_.affine ? gamma[static_cast<size_t>(k % C)] : 1.0, inv_std_[j], sum_dy[j],
                             sum_dy_xhat[j], count, true);
    a[j] = static_cast<float>(coeffs.a);
    b[j] = static_cast<float>(coeffs.b);
    c[j] = static_cast<float>(coeffs.c);
  }

  const Tensor d_a = norm_cuda::upload(a), d_b = norm_cuda::upload(b), d_c = norm_cuda::upload(c);
  return norm_cuda::normalize_backward(slots, l, ldy, x_, dy, d_mean, d_a, d_b, d_c);
}

}  // namespace pdegen

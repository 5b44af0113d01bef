// LAMB (You et al. 2020, "Large batch optimization for deep learning: training BERT in 76 minutes"):
// Adam's bias-corrected moments give the update u = m_hat / (sqrt(v_hat) + eps) + weight_decay * w,
// and per parameter tensor the trust ratio ||w|| / ||u|| (1 when either norm is 0, optionally clamped
// from above by max_trust_ratio) scales the step: w -= lr * ratio * u.
// Two passes: the first updates the moments and sums ||w||^2 and ||u||^2 per parameter (fixed
// order, see parameter_chunks.hpp); the second recomputes u from the moments and applies it, so no
// update-sized scratch buffer is needed.
#include <algorithm>
#include <cmath>

#include "optim/optimizer.hpp"
#include "optim/parameter_chunks.hpp"

namespace pdegen {

namespace {

class Lamb final : public Optimizer {
 public:
  Lamb(const OptimizerSettings& settings, const ParameterRegistry& params)
      : settings_(settings), chunks_(params), size_(params.flat_values().numel()) {
    exp_avg_ = Tensor::zeros(Shape{size_});
    exp_avg_sq_ = Tensor::zeros(Shape{size_});
  }

  std::string_view name() const override { return "lamb"; }

  void step(ParameterRegistry& params, double lr) override {
    PDEGEN_CHECK(params.flat_values().numel() == size_,
                 "lamb was made for {} parameter values, the registry has {}", size_,
                 params.flat_values().numel());
    const double t = static_cast<double>(step_count_ + 1);
    const double b1 = settings_.adam.beta1, b2 = settings_.adam.beta2;
    const float beta1 = static_cast<float>(b1), beta2 = static_cast<float>(b2);
    const float one_minus_beta1 = static_cast<float>(1 - b1), one_minus_beta2 = static_cast<float>(1 - b2);
    const float inv_bias1 = static_cast<float>(1 / (1 - std::pow(b1, t)));
    const float inv_sqrt_bias2 = static_cast<float>(1 / std::sqrt(1 - std::pow(b2, t)));
    const float eps = static_cast<float>(settings_.adam.eps), wd = static_cast<float>(settings_.weight_decay);

    float* p = params.flat_values().data<float>();
    const float* g = params.flat_grads().data<float>();
    float* m = exp_avg_.data<float>();
    float* v = exp_avg_sq_.data<float>();
    auto update = [=](int64_t i) {
      return m[i] * inv_bias1 / (std::sqrt(v[i]) * inv_sqrt_bias2 + eps) + wd * p[i];
    };

    const auto norms = chunks_.sums<2>([&](int64_t begin, int64_t end, double* acc) {
      double ww = 0, uu = 0;
#pragma omp simd reduction(+ : ww, uu)
      for (int64_t i = begin; i < end; ++i) {
        m[i] = beta1 * m[i] + one_minus_beta1 * g[i];
        v[i] = beta2 * v[i] + one_minus_beta2 * g[i] * g[i];
        const float u = update(i);
        ww += static_cast<double>(p[i]) * p[i];
        uu += static_cast<double>(u) * u;
      }
      acc[0] = ww;
      acc[1] = uu;
    });
    const double clamp = settings_.lamb.max_trust_ratio;
    std::vector<float> rate(norms.size());
    for (size_t k = 0; k < norms.size(); ++k) {
      const double w_norm = std::sqrt(norms[k][0]), u_norm = std::sqrt(norms[k][1]);
      double ratio = w_norm > 0 && u_norm > 0 ? w_norm / u_norm : 1.0;
      if (clamp > 0) ratio = std::min(ratio, clamp);
      rate[k] = static_cast<float>(lr * ratio);
    }
    chunks_.for_each([&](int param, int64_t begin, int64_t end) {
      const float r = rate[static_cast<size_t>(param)];
#pragma omp simd
      for (int64_t i = begin; i < end; ++i) p[i] -= r * update(i);
    });
    ++step_count_;
  }

  std::vector<std::pair<std::string, Tensor*>> state() override {
    return {{"exp_avg", &exp_avg_}, {"exp_avg_sq", &exp_avg_sq_}};
  }

 private:
  OptimizerSettings settings_;
  ParameterChunks chunks_;
  int64_t size_;
  Tensor exp_avg_, exp_avg_sq_;  // first and second moments, flat like the parameters
};

}  // namespace

std::unique_ptr<Optimizer> make_lamb(const OptimizerSettings& settings, const ParameterRegistry& params) {
  return std::make_unique<Lamb>(settings, params);
}

}  // namespace pdegen

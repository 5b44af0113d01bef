// Adam and AdamW (Kingma & Ba 2015; Loshchilov & Hutter 2019) with PyTorch's formulas: bias-corrected
// moments, eps added to the corrected root of the second moment, and weight decay either as an L2
// term in the gradient (Adam) or as a decoupled shrink p *= 1 - lr * wd (AdamW). One fused loop.
#include <cmath>

#include "optim/optimizer.hpp"

namespace pdegen {

namespace {

class Adam final : public Optimizer {
 public:
  Adam(const OptimizerSettings& config, int64_t size, bool decoupled)
      : settings_(config.adam), weight_decay_(config.weight_decay), decoupled_(decoupled) {
    exp_avg_ = Tensor::zeros(Shape{size});
    exp_avg_sq_ = Tensor::zeros(Shape{size});
  }

  std::string_view name() const override { return decoupled_ ? "adamw" : "adam"; }

  void step(ParameterRegistry& params, double lr) override {
    const int64_t n = exp_avg_.numel();
    PDEGEN_CHECK(params.flat_values().numel() == n,
                 "{} was made for {} parameter values, the registry has {}", name(), n,
                 params.flat_values().numel());
    const double t = static_cast<double>(step_count_ + 1);
    const double b1 = settings_.beta1, b2 = settings_.beta2;
    // Scalars in double, applied in fp32 as PyTorch does.
    const float beta1 = static_cast<float>(b1), beta2 = static_cast<float>(b2);
    const float one_minus_beta1 = static_cast<float>(1 - b1), one_minus_beta2 = static_cast<float>(1 - b2);
    const float step_size = static_cast<float>(lr / (1 - std::pow(b1, t)));
    const float inv_sqrt_bias2 = static_cast<float>(1 / std::sqrt(1 - std::pow(b2, t)));
    const float eps = static_cast<float>(settings_.eps);
    const float l2 = decoupled_ ? 0.0f : static_cast<float>(weight_decay_);
    const float shrink = decoupled_ ? static_cast<float>(1 - lr * weight_decay_) : 1.0f;

    float* p = params.flat_values().data<float>();
    const float* g = params.flat_grads().data<float>();
    float* m = exp_avg_.data<float>();
    float* v = exp_avg_sq_.data<float>();
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const float grad = g[i] + l2 * p[i];
      const float mi = beta1 * m[i] + one_minus_beta1 * grad;
      const float vi = beta2 * v[i] + one_minus_beta2 * grad * grad;
      m[i] = mi;
      v[i] = vi;
      p[i] = p[i] * shrink - step_size * mi / (std::sqrt(vi) * inv_sqrt_bias2 + eps);
    }
    ++step_count_;
  }

  std::vector<std::pair<std::string, Tensor*>> state() override {
    return {{"exp_avg", &exp_avg_}, {"exp_avg_sq", &exp_avg_sq_}};
  }

 private:
  AdamSettings settings_;
  double weight_decay_;
  bool decoupled_;
  Tensor exp_avg_, exp_avg_sq_;  // first and second moments, flat like the parameters
};

}  // namespace

std::unique_ptr<Optimizer> make_adam(const OptimizerSettings& config, int64_t size,
                                     bool decoupled_weight_decay) {
  return std::make_unique<Adam>(config, size, decoupled_weight_decay);
}

}  // namespace pdegen

// SGD with PyTorch's momentum (dampening 0): b = mu b + g with g = grad + wd p (L2 weight decay),
// then p -= lr (g + mu b) with Nesterov or p -= lr b without. The buffer starts at zero, which gives
// PyTorch's first step b = g exactly. One fused loop.
#include "optim/optimizer.hpp"

namespace pdegen {

namespace {

// b = mu b + g; p -= lr (g + mu b) (Nesterov) or lr b, with g = grad + wd p.
template <bool Nesterov>
void momentum_loop(float* p, const float* g, float* b, int64_t n, float rate, float wd, float mu) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float grad = g[i] + wd * p[i];
    const float bi = mu * b[i] + grad;
    b[i] = bi;
    p[i] -= rate * (Nesterov ? grad + mu * bi : bi);
  }
}

class Sgd final : public Optimizer {
 public:
  Sgd(const OptimizerSettings& config, int64_t size)
      : size_(size),
        momentum_(config.momentum.momentum),
        nesterov_(config.momentum.nesterov),
        weight_decay_(config.weight_decay) {
    PDEGEN_CHECK(!nesterov_ || momentum_ > 0, "Nesterov momentum needs momentum > 0");
    if (momentum_ != 0) buffer_ = Tensor::zeros(Shape{size});
  }

  std::string_view name() const override { return "sgd"; }

  void step(ParameterRegistry& params, double lr) override {
    PDEGEN_CHECK(params.flat_values().numel() == size_,
                 "sgd was made for {} parameter values, the registry has {}", size_,
                 params.flat_values().numel());
    const float rate = static_cast<float>(lr), wd = static_cast<float>(weight_decay_),
                mu = static_cast<float>(momentum_);
    float* p = params.flat_values().data<float>();
    const float* g = params.flat_grads().data<float>();
    const int64_t n = size_;
    if (momentum_ == 0) {
#pragma omp parallel for simd schedule(static)
      for (int64_t i = 0; i < n; ++i) p[i] -= rate * (g[i] + wd * p[i]);
    } else if (nesterov_) {
      momentum_loop<true>(p, g, buffer_.data<float>(), n, rate, wd, mu);
    } else {
      momentum_loop<false>(p, g, buffer_.data<float>(), n, rate, wd, mu);
    }
    ++step_count_;
  }

  std::vector<std::pair<std::string, Tensor*>> state() override {
    if (momentum_ == 0) return {};
    return {{"momentum_buffer", &buffer_}};
  }

 private:
  int64_t size_;
  double momentum_;
  bool nesterov_;
  double weight_decay_;
  Tensor buffer_;  // momentum buffer, flat like the parameters (none without momentum)
};

}  // namespace

std::unique_ptr<Optimizer> make_sgd(const OptimizerSettings& config, int64_t size) {
  return std::make_unique<Sgd>(config, size);
}

}  // namespace pdegen

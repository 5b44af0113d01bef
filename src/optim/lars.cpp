// LARS (You, Gitman & Ginsburg 2017, "Large batch training of convolutional networks"), in the form
// of the common implementations (torchlars, MLPerf): per parameter tensor, the trust ratio
//   ratio = trust_coefficient * ||w|| / (||g|| + weight_decay * ||w|| + eps)   (1 if ||w|| or ||g|| is 0)
// scales the weight-decayed gradient d = ratio * (g + wd w), which then drives PyTorch's SGD
// momentum: b = mu b + d, w -= lr (d + mu b) with Nesterov or lr b without (w -= lr d at mu = 0).
#include <cmath>

#include "optim/optimizer.hpp"
#include "optim/parameter_chunks.hpp"

namespace pdegen {

namespace {

class Lars final : public Optimizer {
 public:
  Lars(const OptimizerSettings& settings, const ParameterRegistry& params)
      : settings_(settings), chunks_(params), size_(params.flat_values().numel()) {
    PDEGEN_CHECK(!settings.momentum.nesterov || settings.momentum.momentum > 0,
                 "Nesterov momentum needs momentum > 0");
    if (settings.momentum.momentum != 0) buffer_ = Tensor::zeros(Shape{size_});
  }

  std::string_view name() const override { return "lars"; }

  void step(ParameterRegistry& params, double lr) override {
    PDEGEN_CHECK(params.flat_values().numel() == size_,
                 "lars was made for {} parameter values, the registry has {}", size_,
                 params.flat_values().numel());
    float* p = params.flat_values().data<float>();
    const float* g = params.flat_grads().data<float>();
    const auto norms = chunks_.sums<2>([&](int64_t begin, int64_t end, double* acc) {
      double ww = 0, gg = 0;
#pragma omp simd reduction(+ : ww, gg)
      for (int64_t i = begin; i < end; ++i) {
        ww += static_cast<double>(p[i]) * p[i];
        gg += static_cast<double>(g[i]) * g[i];
      }
      acc[0] = ww;
      acc[1] = gg;
    });
    const double wd = settings_.weight_decay, tc = settings_.lars.trust_coefficient, eps = settings_.lars.eps;
    std::vector<float> ratio(norms.size());
    for (size_t k = 0; k < norms.size(); ++k) {
      const double w_norm = std::sqrt(norms[k][0]), g_norm = std::sqrt(norms[k][1]);
      ratio[k] =
          static_cast<float>(w_norm > 0 && g_norm > 0 ? tc * w_norm / (g_norm + wd * w_norm + eps) : 1.0);
    }

    const float rate = static_cast<float>(lr), decay = static_cast<float>(wd),
                mu = static_cast<float>(settings_.momentum.momentum);
    const bool nesterov = settings_.momentum.nesterov;
    float* b = buffer_.numel() > 0 ? buffer_.data<float>() : nullptr;
    chunks_.for_each([&](int param, int64_t begin, int64_t end) {
      const float r = ratio[static_cast<size_t>(param)];
      if (!b) {
#pragma omp simd
        for (int64_t i = begin; i < end; ++i) p[i] -= rate * (r * (g[i] + decay * p[i]));
        return;
      }
#pragma omp simd
      for (int64_t i = begin; i < end; ++i) {
        const float d = r * (g[i] + decay * p[i]);
        const float bi = mu * b[i] + d;
        b[i] = bi;
        p[i] -= rate * (nesterov ? d + mu * bi : bi);
      }
    });
    ++step_count_;
  }

  std::vector<std::pair<std::string, Tensor*>> state() override {
    if (buffer_.numel() == 0) return {};
    return {{"momentum_buffer", &buffer_}};
  }

 private:
  OptimizerSettings settings_;
  ParameterChunks chunks_;
  int64_t size_;
  Tensor buffer_;  // momentum buffer, flat like the parameters (none without momentum)
};

}  // namespace

std::unique_ptr<Optimizer> make_lars(const OptimizerSettings& settings, const ParameterRegistry& params) {
  return std::make_unique<Lars>(settings, params);
}

}  // namespace pdegen

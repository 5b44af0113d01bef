// burgers1d initial conditions by global index (see burgers_sampler.hpp).
#include "physics/burgers_sampler.hpp"

#include <cmath>
#include <numbers>

#include "core/error.hpp"
#include "core/rng.hpp"

namespace pdegen {

BurgersSampler::BurgersSampler(const BurgersSettings& settings, int nx, int nt)
    : settings_(settings), nx_(nx), nt_(nt) {
  PDEGEN_CHECK(nx >= 2 && nt >= 2 && settings.ic_terms >= 1, "burgers1d grid {} x {}, {} terms", nt, nx,
               settings.ic_terms);
}

std::vector<double> BurgersSampler::frequencies(uint64_t seed, uint64_t g) const {
  const int K = settings_.ic_terms;
  const double lo = settings_.c_min, span = settings_.c_max - settings_.c_min;
  std::vector<double> c(static_cast<size_t>(K));
  for (int k = 0; k < K; ++k) {
    if (settings_.ic_sampling == IcSampling::random)
      c[static_cast<size_t>(k)] = lo + span * random_uniform(seed, burgers_stream(k), g);
    else
      c[static_cast<size_t>(k)] = lo + span * (k + random_uniform(seed, burgers_stream(0), g)) / K;
  }
  return c;
}

double BurgersSampler::initial_value(const std::vector<double>& c, double x) {
  double sum = 0;
  for (double ck : c) sum += 0.5 * (1.0 - std::cos(2.0 * std::numbers::pi * ck * x));
  return sum / static_cast<double>(c.size());
}

void BurgersSampler::sample(uint64_t seed, const std::vector<uint64_t>& global_indices, Tensor& input) const {
  const Shape shape{static_cast<int64_t>(global_indices.size()), channels, nt_, nx_};
  if (!(input.defined() && input.shape() == shape && input.is_plain() && input.dtype() == DType::f32 &&
        input.device() == Device::cpu))
    input = Tensor::empty(shape);
  float* out = input.data<float>();
  for (size_t s = 0; s < global_indices.size(); ++s) {
    const std::vector<double> c = frequencies(seed, global_indices[s]);
    const int64_t plane = static_cast<int64_t>(nt_) * nx_;
    float *b = out + static_cast<int64_t>(s) * channels * plane, *x = b + plane, *t = x + plane;
    for (int j = 0; j < nx_; ++j) b[j] = static_cast<float>(initial_value(c, j / double(nx_ - 1)));
    for (int n = 0; n < nt_; ++n)
      for (int j = 0; j < nx_; ++j) {
        const int64_t at = static_cast<int64_t>(n) * nx_ + j;
        b[at] = b[j];
        x[at] = static_cast<float>(j / double(nx_ - 1));
        t[at] = static_cast<float>(n / double(nt_ - 1));
      }
  }
}

}  // namespace pdegen

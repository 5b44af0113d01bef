// Global-norm gradient clipping (see grad_clip.hpp).
#include "optim/grad_clip.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

namespace pdegen {

double global_norm(const Tensor& flat) {
  PDEGEN_CHECK(flat.dtype() == DType::f32, "global_norm of {}", flat.describe());
  // The chunk size fixes the summation order independently of the thread count.
  constexpr int64_t chunk = 1 << 14;
  const int64_t n = flat.numel(), chunks = (n + chunk - 1) / chunk;
  const float* g = flat.data<float>();
  std::vector<double> partial(static_cast<size_t>(chunks));
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    double sum = 0;
    const int64_t end = std::min(n, (c + 1) * chunk);
    for (int64_t i = c * chunk; i < end; ++i) sum += static_cast<double>(g[i]) * g[i];
    partial[static_cast<size_t>(c)] = sum;
  }
  double total = 0;
  for (double p : partial) total += p;
  return std::sqrt(total);
}

double clip_grad_norm(ParameterRegistry& params, double max_norm) {
  PDEGEN_CHECK(max_norm >= 0, "gradient clip norm {} < 0", max_norm);
  const Tensor& grads = params.flat_grads();
  const double norm = global_norm(grads);
  const double factor = max_norm / (norm + 1e-6);
  if (max_norm > 0 && factor < 1) {
    const float scale = static_cast<float>(factor);
    float* g = grads.data<float>();
    const int64_t n = grads.numel();
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; ++i) g[i] *= scale;
  }
  return norm;
}

}  // namespace pdegen

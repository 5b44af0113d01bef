// Helpers the benchmark programs share: deterministic random inputs and the median of timings.
#pragma once

#include <algorithm>
#include <vector>

#include "core/rng.hpp"
#include "core/tensor.hpp"

namespace pdegen::bench {

// Uniform on [-1, 1) from the counter-based RNG, plain fp32.
inline Tensor random_field(const Shape& shape, uint64_t stream) {
  Tensor t = Tensor::empty(shape);
  float* p = t.data<float>();
  const int64_t n = t.numel();
#pragma omp parallel for
  for (int64_t i = 0; i < n; ++i)
    p[i] = static_cast<float>(2 * random_uniform(1, stream, static_cast<uint64_t>(i)) - 1);
  return t;
}

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace pdegen::bench

// Test helpers: deterministic random data, central finite differences in double precision, and
// error norms. Layer tests follow one recipe: a naive loop reference in fp64, the layer (oneDNN,
// fp32) against it forward, and the layer's backward against central differences of the fp64
// reference for L = sum(w * y) with random w.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "core/rng.hpp"
#include "core/tensor.hpp"

namespace pdegen::testing {

using Vec = std::vector<double>;

// Uniform on [lo, hi) from the counter-based RNG; `stream` keeps different arrays independent.
inline Vec random_vec(size_t n, uint64_t stream, double lo = -1, double hi = 1) {
  Vec v(n);
  for (size_t i = 0; i < n; ++i) v[i] = lo + (hi - lo) * random_uniform(12345, rng_stream::tests + stream, i);
  return v;
}

// Plain fp32 tensor holding v (logical order), optionally re-blocked.
inline Tensor tensor_from(const Vec& v, const Shape& shape, int channel_block = 1) {
  REQUIRE(static_cast<int64_t>(v.size()) == shape.numel());
  Tensor t = Tensor::empty(shape, DType::f32);
  float* p = t.data<float>();
  for (size_t i = 0; i < v.size(); ++i) p[i] = static_cast<float>(v[i]);
  return to_channel_block(t, channel_block);
}

// Logical-order values of any fp32 tensor (plain or blocked).
inline Vec values_of(const Tensor& t) {
  Tensor p = to_plain(t);
  const float* d = p.data<float>();
  return Vec(d, d + p.numel());
}

inline void copy_into(Tensor& dst, const Vec& v) {
  REQUIRE(dst.is_plain());
  REQUIRE(static_cast<int64_t>(v.size()) == dst.numel());
  float* p = dst.data<float>();
  for (size_t i = 0; i < v.size(); ++i) p[i] = static_cast<float>(v[i]);
}

// max_i |a_i - b_i| / max(max_i |b_i|, floor): error relative to the reference's scale.
inline double rel_max_error(const Vec& a, const Vec& b, double floor = 1e-12) {
  REQUIRE(a.size() == b.size());
  double err = 0, scale = floor;
  for (size_t i = 0; i < a.size(); ++i) {
    err = std::max(err, std::abs(a[i] - b[i]));
    scale = std::max(scale, std::abs(b[i]));
  }
  return err / scale;
}

inline double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Central differences of L(v) = sum_k w_k f(v)_k with respect to every entry of v, in fp64.
// Truncation error O(h^2 f''') ~ 1e-12 with h = 1e-5 on smooth f; kinks (ReLU, max) must be kept
// farther than h from the inputs by the caller.
inline Vec fd_gradient(const std::function<Vec(const Vec&)>& f, Vec v, const Vec& w, double h = 1e-5) {
  Vec g(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const double keep = v[i];
    v[i] = keep + h;
    const double lp = dot(w, f(v));
    v[i] = keep - h;
    const double lm = dot(w, f(v));
    v[i] = keep;
    g[i] = (lp - lm) / (2 * h);
  }
  return g;
}

// fp32 forward/backward against fp64 references: sums of K fp32 products carry ~sqrt(K) * 6e-8
// relative rounding, far below this for the K <= a few thousand of the test shapes, while a wrong
// index or a missing term gives errors of order 1.
inline constexpr double f32_tol = 2e-5;

}  // namespace pdegen::testing

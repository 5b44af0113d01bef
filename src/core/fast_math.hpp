// Vectorisable elementary functions for the element-wise kernels. libm's expf is an opaque scalar
// call that stops a loop from vectorising; fast_exp is branch-free arithmetic on floats and their bit
// patterns, so an OpenMP simd loop runs it 16 lanes at a time with AVX-512. On the GPU it is the
// hardware's __expf.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

#include "core/hd.hpp"

namespace pdegen {

namespace fast_math_detail {
// a * b + c, fused where the hardware has it (one rounding, and what the coefficients below were
// checked with). Without FMA, fmaf would be a software library call: then the two roundings of a
// multiply and an add, which the Cephes coefficients were designed for anyway.
PDEGEN_HD float madd(float a, float b, float c) {
#if defined(__FMA__) || defined(__CUDA_ARCH__)
  return fmaf(a, b, c);
#else
  return a * b + c;
#endif
}
}  // namespace fast_math_detail

// e^x in fp32 within 2 ulp over the whole normal range (about 1 ulp typical; tests/unit/
// test_fast_math.cpp measures it), +inf above ln(FLT_MAX), gradual underflow into the subnormals
// down to 0 below ln(2^-150), NaN for NaN.
PDEGEN_HD float fast_exp(float x) {
#if defined(__CUDA_ARCH__)
  return __expf(x);
#else
  using fast_math_detail::madd;
  // Clamping keeps the scale exponents below in range while preserving the saturated results
  // (e^89 overflows, e^-104 rounds to 0); a NaN fails both comparisons and passes through.
  x = x > 89.0f ? 89.0f : x;
  x = x < -104.0f ? -104.0f : x;
  // x = n ln2 + r with n = round(x / ln2), |r| <= ln2 / 2. Adding 1.5 * 2^23 rounds to an integer
  // that then sits in the low mantissa bits: no float -> int conversion, which a NaN would make
  // undefined. ln2 in two parts (the first with 9 significant bits, so n * ln2_hi is exact) keeps r
  // accurate to fp32 rounding for every n in range.
  constexpr float shifter = 12582912.0f;  // 1.5 * 2^23
  const float shifted = madd(x, 1.44269504088896341f, shifter);
  const float n = shifted - shifter;
  const auto ni = static_cast<int32_t>(std::bit_cast<uint32_t>(shifted) - std::bit_cast<uint32_t>(shifter));
  float r = madd(n, -0.693359375f, x);
  r = madd(n, 2.12194440e-4f, r);
  // e^r on [-ln2/2, ln2/2]: 1 + r + r^2 p(r) with Cephes' minimax coefficients for expf.
  float p = 1.9875691500e-4f;
  p = madd(p, r, 1.3981999507e-3f);
  p = madd(p, r, 8.3334519073e-3f);
  p = madd(p, r, 4.1665795894e-2f);
  p = madd(p, r, 1.6666665459e-1f);
  p = madd(p, r, 5.0000001201e-1f);
  const float er = madd(p, r * r, r) + 1.0f;
  // Times 2^n as two factors 2^(n/2) and 2^(n - n/2), each a normal float for n in [-150, 128], so
  // that results below FLT_MIN round once into the subnormals and e^88.7 does not overflow early.
  const int32_t n1 = ni >> 1, n2 = ni - n1;
  const float s1 = std::bit_cast<float>(static_cast<uint32_t>(n1 + 127) << 23);
  const float s2 = std::bit_cast<float>(static_cast<uint32_t>(n2 + 127) << 23);
  return er * s1 * s2;
#endif
}

}  // namespace pdegen

// Element types. fp32 is the compute type of the CPU backend, fp64 is for references and solvers,
// fp16/bf16 are storage types (mixed precision on GPUs); conversions are shared host/device code.
#pragma once

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string_view>

#include "core/hd.hpp"

namespace pdegen {

enum class DType : uint8_t { f32, f64, f16, bf16 };

constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32:
      return 4;
    case DType::f64:
      return 8;
    case DType::f16:
      return 2;
    case DType::bf16:
      return 2;
  }
  return 0;
}

constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::f32:
      return "fp32";
    case DType::f64:
      return "fp64";
    case DType::f16:
      return "fp16";
    case DType::bf16:
      return "bf16";
  }
  return "?";
}

// 16-bit storage types: bit patterns only; arithmetic happens in fp32.
struct half_t {
  uint16_t bits;
};
struct bfloat16_t {
  uint16_t bits;
};

template <class T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
  return DType::f32;
}
template <>
constexpr DType dtype_of<double>() {
  return DType::f64;
}
template <>
constexpr DType dtype_of<half_t>() {
  return DType::f16;
}
template <>
constexpr DType dtype_of<bfloat16_t>() {
  return DType::bf16;
}

PDEGEN_HD uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
PDEGEN_HD float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round to nearest even; NaN stays NaN (quiet). A select, not a branch, so that loops over it vectorise.
PDEGEN_HD bfloat16_t to_bf16(float f) {
  const uint32_t u = float_bits(f);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const uint32_t quiet_nan = (u >> 16) | 0x40u;
  return {static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded)};
}
PDEGEN_HD float from_bf16(bfloat16_t b) { return bits_float(static_cast<uint32_t>(b.bits) << 16); }

// IEEE binary16, round to nearest even, overflow to infinity, subnormals kept.
PDEGEN_HD half_t to_f16(float f) {
  uint32_t u = float_bits(f);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return {static_cast<uint16_t>(sign | 0x7e00u)};   // NaN
  if (a >= 0x477ff000u) return {static_cast<uint16_t>(sign | 0x7c00u)};  // overflow/inf
  if (a < 0x38800000u) {  // subnormal half (or zero): scale into the integer range and round
    float v = bits_float(a) * 16777216.0f;  // 2^24: one half-subnormal ulp becomes 1.0
    uint32_t m = static_cast<uint32_t>(v);
    float rem = v - static_cast<float>(m);
    if (rem > 0.5f || (rem == 0.5f && (m & 1u))) ++m;
    return {static_cast<uint16_t>(sign | m)};
  }
  uint32_t e = ((a >> 23) - 112u) << 10;  // rebias 127 -> 15
  uint32_t m = (a >> 13) & 0x3ffu;
  uint32_t h = e | m;
  uint32_t rest = a & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // carries into the exponent correctly
  return {static_cast<uint16_t>(sign | h)};
}
PDEGEN_HD float from_f16(half_t h) {
  uint32_t sign = static_cast<uint32_t>(h.bits & 0x8000u) << 16;
  uint32_t e = (h.bits >> 10) & 0x1fu;
  uint32_t m = h.bits & 0x3ffu;
  if (e == 0) {                                                // zero or subnormal
    float v = static_cast<float>(m) * 5.9604644775390625e-8f;  // 2^-24
    return sign ? -v : v;
  }
  if (e == 31) return bits_float(sign | 0x7f800000u | (m << 13));
  return bits_float(sign | ((e + 112u) << 23) | (m << 13));
}

// Loads and stores of every storage type through fp32, the compute type of every kernel: a kernel
// templated on its storage type T reads with to_float(p[i]) and writes p[i] = from_float<T>(v), so
// one body serves fp32 and the 16-bit mixed-precision activations (the same rounding on both sides).
PDEGEN_HD float to_float(float v) { return v; }
PDEGEN_HD float to_float(half_t v) { return from_f16(v); }
PDEGEN_HD float to_float(bfloat16_t v) { return from_bf16(v); }
template <class T>
PDEGEN_HD T from_float(float v);
template <>
PDEGEN_HD float from_float<float>(float v) {
  return v;
}
template <>
PDEGEN_HD half_t from_float<half_t>(float v) {
  return to_f16(v);
}
template <>
PDEGEN_HD bfloat16_t from_float<bfloat16_t>(float v) {
  return to_bf16(v);
}

// Calls f(T{}) with the storage type of `t` (fp32, fp16 or bf16): the dispatch of kernels templated
// on their storage type. fp64 is not a storage type of activations: std::invalid_argument.
template <class F>
decltype(auto) with_storage_type(DType t, F&& f) {
  switch (t) {
    case DType::f16:
      return f(half_t{});
    case DType::bf16:
      return f(bfloat16_t{});
    case DType::f32:
      break;
    case DType::f64:
      throw std::invalid_argument("fp64 is not an activation storage type (fp32, fp16 or bf16)");
  }
  return f(float{});
}
inline bool is_storage_type(DType t) { return t == DType::f32 || t == DType::f16 || t == DType::bf16; }

}  // namespace pdegen

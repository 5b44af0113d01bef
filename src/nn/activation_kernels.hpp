// Activation arithmetic shared by the CPU (OpenMP) and CUDA backends: forward value and the
// derivative expressed through whatever backward has at hand (input x and/or output y).
//
// Each function is a template on the kind, so that a loop instantiated for one kind has no switch
// inside and vectorises; on the CPU the exponentials are fast_exp (core/fast_math.hpp), not libm's
// scalar calls.
#pragma once

#include <type_traits>

#include "core/activation_kind.hpp"
#include "core/fast_math.hpp"
#include "core/hd.hpp"

namespace pdegen {

// e^x for the activations: fast_exp on the CPU (vectorisable); on the GPU CUDA's expf, within 2 ulp
// over the whole range, rather than fast_exp's __expf, whose error grows with |x| (2 + 1.17 |x| ulp:
// 1e-5 relative in sigmoid(-87)). Memory-bound kernels do not notice the extra instructions.
PDEGEN_HD float activation_exp(float x) {
#if defined(__CUDA_ARCH__)
  return expf(x);
#else
  return fast_exp(x);
#endif
}

// 1 / (1 + e^-x) as e^-|x| on both sides, so the exponential never overflows and the tail below
// -87 underflows gradually instead of through 1 / inf.
PDEGEN_HD float sigmoidf(float x) {
  const float e = activation_exp(x < 0.0f ? x : -x);
  return (x < 0.0f ? e : 1.0f) / (1.0f + e);
}

// tanh without the cancellation of 1 - 2 / (e^2x + 1) near 0: Cephes' odd polynomial below 0.625
// (where that formula would lose up to all digits), the exponential form above it; both are
// computed and one selected, so the loop stays branch-free. Within 1.6 ulp of tanh over all floats.
PDEGEN_HD float fast_tanh(float x) {
  const float ax = x < 0.0f ? -x : x;
  const float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = p * z * x + x;
  const float e = activation_exp(-2.0f * ax);  // in (0, 1]: no overflow for large |x|
  const float large = (1.0f - e) / (1.0f + e);
  const float signed_large = x < 0.0f ? -large : large;
  return ax < 0.625f ? small : signed_large;
}

template <ActivationKind K>
PDEGEN_HD float activation_forward(float x, float alpha) {
  if constexpr (K == ActivationKind::identity) {
    return x;
  } else if constexpr (K == ActivationKind::relu) {
    return x > 0.0f ? x : 0.0f;
  } else if constexpr (K == ActivationKind::leaky_relu) {
    return x > 0.0f ? x : alpha * x;
  } else if constexpr (K == ActivationKind::tanh) {
    return fast_tanh(x);
  } else if constexpr (K == ActivationKind::silu) {
    return x * sigmoidf(x);
  } else {
    static_assert(K == ActivationKind::sigmoid);
    return sigmoidf(x);
  }
}

// What the derivative reads besides dy: a backend keeps only that from forward, and its loop reads
// only that (x and y are passed as 0 otherwise).
PDEGEN_HD constexpr bool activation_backward_reads_input(ActivationKind k) {
  return k == ActivationKind::relu || k == ActivationKind::leaky_relu || k == ActivationKind::silu;
}
PDEGEN_HD constexpr bool activation_backward_reads_output(ActivationKind k) {
  return k == ActivationKind::tanh || k == ActivationKind::sigmoid;
}

// dL/dx = dL/dy * f'(x); tanh and sigmoid use the stored output y (cheaper, no exp).
template <ActivationKind K>
PDEGEN_HD float activation_backward(float x, float y, float dy, float alpha) {
  if constexpr (K == ActivationKind::identity) {
    return dy;
  } else if constexpr (K == ActivationKind::relu) {
    return x > 0.0f ? dy : 0.0f;
  } else if constexpr (K == ActivationKind::leaky_relu) {
    return x > 0.0f ? dy : alpha * dy;
  } else if constexpr (K == ActivationKind::tanh) {
    return dy * (1.0f - y * y);
  } else if constexpr (K == ActivationKind::silu) {
    const float s = sigmoidf(x);
    return dy * s * (1.0f + x * (1.0f - s));
  } else {
    static_assert(K == ActivationKind::sigmoid);
    return dy * y * (1.0f - y);
  }
}

// Calls f(std::integral_constant<ActivationKind, k>{}) so that a backend instantiates its loop once
// per kind and picks the instance outside the loop (host side: it chooses a loop or a kernel).
template <class F>
decltype(auto) with_activation_kind(ActivationKind k, F&& f) {
  switch (k) {
    case ActivationKind::identity:
      return f(std::integral_constant<ActivationKind, ActivationKind::identity>{});
    case ActivationKind::relu:
      return f(std::integral_constant<ActivationKind, ActivationKind::relu>{});
    case ActivationKind::leaky_relu:
      return f(std::integral_constant<ActivationKind, ActivationKind::leaky_relu>{});
    case ActivationKind::tanh:
      return f(std::integral_constant<ActivationKind, ActivationKind::tanh>{});
    case ActivationKind::silu:
      return f(std::integral_constant<ActivationKind, ActivationKind::silu>{});
    case ActivationKind::sigmoid:
      break;
  }
  return f(std::integral_constant<ActivationKind, ActivationKind::sigmoid>{});
}

}  // namespace pdegen

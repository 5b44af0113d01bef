// Activation on the CPU: one OpenMP simd loop over storage per kind, the kind chosen outside the loop
// (a switch per element would stop it vectorising). Element-wise, so layout-agnostic.
#include <algorithm>
#include <cstdint>

#include "nn/activation.hpp"

namespace pdegen {

namespace {

template <ActivationKind K>
void forward_loop(const float* __restrict x, float* __restrict y, int64_t n, float alpha) {
#pragma omp parallel for simd schedule(simd : static)
  for (int64_t i = 0; i < n; ++i) y[i] = activation_forward<K>(x[i], alpha);
}

// x or y may be null where the kind's derivative does not read it.
template <ActivationKind K>
void backward_loop(const float* __restrict x, const float* __restrict y, const float* __restrict dy,
                   float* __restrict dx, int64_t n, float alpha) {
#pragma omp parallel for simd schedule(simd : static)
  for (int64_t i = 0; i < n; ++i) {
    const float xi = activation_backward_reads_input(K) ? x[i] : 0.0f;
    const float yi = activation_backward_reads_output(K) ? y[i] : 0.0f;
    dx[i] = activation_backward<K>(xi, yi, dy[i], alpha);
  }
}

// The same arithmetic over one array: v = f(v) (forward) or g = f'(x or y) g (backward). Separate
// from the loops above, whose __restrict promises that input and output never alias.
template <ActivationKind K>
void forward_loop_in_place(float* v, int64_t n, float alpha) {
#pragma omp parallel for simd schedule(simd : static)
  for (int64_t i = 0; i < n; ++i) v[i] = activation_forward<K>(v[i], alpha);
}

template <ActivationKind K>
void backward_loop_in_place(const float* __restrict x, const float* __restrict y, float* g, int64_t n,
                            float alpha) {
#pragma omp parallel for simd schedule(simd : static)
  for (int64_t i = 0; i < n; ++i) {
    const float xi = activation_backward_reads_input(K) ? x[i] : 0.0f;
    const float yi = activation_backward_reads_output(K) ? y[i] : 0.0f;
    g[i] = activation_backward<K>(xi, yi, g[i], alpha);
  }
}

// bits[w] bit j = y[32 w + j] > 0 (for the kinds that keep only the sign, y > 0 exactly when x > 0).
void sign_bits_of(const float* y, uint32_t* bits, int64_t n) {
  const int64_t words = (n + 31) / 32;
#pragma omp parallel for schedule(static)
  for (int64_t w = 0; w < words; ++w) {
    const int64_t first = w * 32, count = std::min<int64_t>(32, n - first);
    uint32_t word = 0;
    for (int64_t j = 0; j < count; ++j) word |= static_cast<uint32_t>(y[first + j] > 0.0f) << j;
    bits[w] = word;
  }
}

// v = f(v) and the sign bits of the result in one pass (the in-place forward of a sign-only layer).
template <ActivationKind K>
void forward_loop_in_place_with_signs(float* v, uint32_t* bits, int64_t n, float alpha) {
  const int64_t words = (n + 31) / 32;
#pragma omp parallel for schedule(static)
  for (int64_t w = 0; w < words; ++w) {
    const int64_t first = w * 32, count = std::min<int64_t>(32, n - first);
    uint32_t word = 0;
    for (int64_t j = 0; j < count; ++j) {
      const float y = activation_forward<K>(v[first + j], alpha);
      v[first + j] = y;
      word |= static_cast<uint32_t>(y > 0.0f) << j;
    }
    bits[w] = word;
  }
}

// dx = f'(x) dy from the sign bits alone: x is replaced by +-1, which the sign-only derivatives
// cannot tell from x itself. dx may be dy (in place).
template <ActivationKind K>
void backward_loop_from_sign(const uint32_t* bits, const float* dy, float* dx, int64_t n, float alpha) {
  const int64_t words = (n + 31) / 32;
#pragma omp parallel for schedule(static)
  for (int64_t w = 0; w < words; ++w) {
    const int64_t first = w * 32, count = std::min<int64_t>(32, n - first);
    for (int64_t j = 0; j < count; ++j) {
      const float x = (bits[w] >> j) & 1u ? 1.0f : -1.0f;
      dx[first + j] = activation_backward<K>(x, x, dy[first + j], alpha);
    }
  }
}

}  // namespace

void Activation::keep_sign_only(const Tensor& y) {
  sign_bits_ = Tensor::empty(Shape{(y.numel() + 31) / 32}, DType::f32);  // 32-bit words
  sign_bits_of(y.data<float>(), static_cast<uint32_t*>(sign_bits_.raw()), y.numel());
  x_ = Tensor();
  y_ = Tensor();
}

void Activation::backward_cpu_into(const Tensor& dy, const Tensor& dx) const {
  if (sign_bits_.defined()) {
    with_activation_kind(kind_, [&](auto kind) {
      if constexpr (activation_backward_reads_input(decltype(kind)::value))
        backward_loop_from_sign<decltype(kind)::value>(static_cast<const uint32_t*>(sign_bits_.raw()),
                                                       dy.data<float>(), dx.data<float>(), dy.numel(),
                                                       alpha_);
    });
    return;
  }
  const float* xs = x_.defined() ? x_.data<float>() : nullptr;
  const float* ys = y_.defined() ? y_.data<float>() : nullptr;
  if (dx.raw() == dy.raw()) {
    with_activation_kind(kind_, [&](auto kind) {
      backward_loop_in_place<decltype(kind)::value>(xs, ys, dx.data<float>(), dx.numel(), alpha_);
    });
  } else {
    with_activation_kind(kind_, [&](auto kind) {
      backward_loop<decltype(kind)::value>(xs, ys, dy.data<float>(), dx.data<float>(), dy.numel(), alpha_);
    });
  }
}

Tensor Activation::forward_cpu(const Tensor& x) {
  PDEGEN_CHECK(x.dtype() == DType::f32, "activation computes in f32, got {}", x.describe());
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device(), x.channel_block());
  with_activation_kind(kind_, [&](auto kind) {
    forward_loop<decltype(kind)::value>(x.data<float>(), y.data<float>(), x.numel(), alpha_);
  });
  keep_for_backward(x, y);
  if (keeps_sign_only_) keep_sign_only(y);
  return y;
}

Tensor Activation::backward_cpu(const Tensor& dy) {
  check_gradient(dy);
  Tensor dx = Tensor::empty(dy.shape(), dy.dtype(), dy.device(), dy.channel_block());
  backward_cpu_into(dy, dx);
  return dx;
}

Tensor Activation::forward_in_place_cpu(const Tensor& x) {
  PDEGEN_CHECK(x.dtype() == DType::f32, "activation computes in f32, got {}", x.describe());
  // x is overwritten with y. Where the derivative reads x (ReLU, LeakyReLU), reading y instead gives
  // the same result, because runs_in_place() admits only kinds for which x > 0 exactly when y > 0.
  keep_for_backward(x, x);
  if (keeps_sign_only_) {
    x_ = Tensor();
    y_ = Tensor();
    sign_bits_ = Tensor::empty(Shape{(x.numel() + 31) / 32}, DType::f32);  // 32-bit words
    with_activation_kind(kind_, [&](auto kind) {
      if constexpr (activation_backward_reads_input(decltype(kind)::value))
        forward_loop_in_place_with_signs<decltype(kind)::value>(
            x.data<float>(), static_cast<uint32_t*>(sign_bits_.raw()), x.numel(), alpha_);
    });
    return x;
  }
  with_activation_kind(kind_, [&](auto kind) {
    forward_loop_in_place<decltype(kind)::value>(x.data<float>(), x.numel(), alpha_);
  });
  return x;
}

Tensor Activation::backward_in_place_cpu(const Tensor& dy) {
  check_gradient(dy);
  backward_cpu_into(dy, dy);
  return dy;
}

}  // namespace pdegen

// Activation on the CPU: one OpenMP simd loop over storage per kind and storage type (fp32, or bf16
// read and written through fp32), both chosen outside the loop (a switch per element would stop it
// vectorising). Element-wise, so layout-agnostic.
#include <algorithm>
#include <cstdint>

#include "nn/activation.hpp"

namespace pdegen {

namespace {

template <ActivationKind K, class T>
void forward_loop(const T* __restrict x, T* __restrict y, int64_t n, float alpha) {
#pragma omp parallel for simd schedule(simd : static)
  for (int64_t i = 0; i < n; ++i) y[i] = from_float<T>(activation_forward<K>(to_float(x[i]), alpha));
}

// x or y may be null where the kind's derivative does not read it.
template <ActivationKind K, class T>
void backward_loop(const T* __restrict x, const T* __restrict y, const T* __restrict dy, T* __restrict dx,
                   int64_t n, float alpha) {
#pragma omp parallel for simd schedule(simd : static)
  for (int64_t i = 0; i < n; ++i) {
    const float xi = activation_backward_reads_input(K) ? to_float(x[i]) : 0.0f;
    const float yi = activation_backward_reads_output(K) ? to_float(y[i]) : 0.0f;
    dx[i] = from_float<T>(activation_backward<K>(xi, yi, to_float(dy[i]), alpha));
  }
}

// The same arithmetic over one array: v = f(v) (forward) or g = f'(x or y) g (backward). Separate
// from the loops above, whose __restrict promises that input and output never alias.
template <ActivationKind K, class T>
void forward_loop_in_place(T* v, int64_t n, float alpha) {
#pragma omp parallel for simd schedule(simd : static)
  for (int64_t i = 0; i < n; ++i) v[i] = from_float<T>(activation_forward<K>(to_float(v[i]), alpha));
}

template <ActivationKind K, class T>
void backward_loop_in_place(const T* __restrict x, const T* __restrict y, T* g, int64_t n, float alpha) {
#pragma omp parallel for simd schedule(simd : static)
  for (int64_t i = 0; i < n; ++i) {
    const float xi = activation_backward_reads_input(K) ? to_float(x[i]) : 0.0f;
    const float yi = activation_backward_reads_output(K) ? to_float(y[i]) : 0.0f;
    g[i] = from_float<T>(activation_backward<K>(xi, yi, to_float(g[i]), alpha));
  }
}

// bits[w] bit j = y[32 w + j] > 0 (for the kinds that keep only the sign, y > 0 exactly when x > 0).
template <class T>
void sign_bits_of(const T* y, uint32_t* bits, int64_t n) {
  const int64_t words = (n + 31) / 32;
#pragma omp parallel for schedule(static)
  for (int64_t w = 0; w < words; ++w) {
    const int64_t first = w * 32, count = std::min<int64_t>(32, n - first);
    uint32_t word = 0;
    for (int64_t j = 0; j < count; ++j) word |= static_cast<uint32_t>(to_float(y[first + j]) > 0.0f) << j;
    bits[w] = word;
  }
}

// v = f(v) and the sign bits of the result in one pass (the in-place forward of a sign-only layer),
// 32 values (one word) at a time in vectorisable loops: f, the store, then the word from the stored
// (rounded) values.
template <ActivationKind K, class T>
void forward_loop_in_place_with_signs(T* v, uint32_t* bits, int64_t n, float alpha) {
  const int64_t words = (n + 31) / 32;
#pragma omp parallel for schedule(static)
  for (int64_t w = 0; w < words; ++w) {
    T* p = v + w * 32;
    const int count = static_cast<int>(std::min<int64_t>(32, n - w * 32));
    float y[32] = {};
#pragma omp simd
    for (int j = 0; j < count; ++j) {
      p[j] = from_float<T>(activation_forward<K>(to_float(p[j]), alpha));
      y[j] = to_float(p[j]);
    }
    uint32_t word = 0;
#pragma omp simd reduction(| : word)
    for (int j = 0; j < 32; ++j) word |= static_cast<uint32_t>(y[j] > 0.0f) << j;
    bits[w] = word;
  }
}

// dx = f'(x) dy from the sign bits alone: x is replaced by +-1, which the sign-only derivatives
// cannot tell from x itself. dx may be dy (in place).
template <ActivationKind K, class T>
void backward_loop_from_sign(const uint32_t* bits, const T* dy, T* dx, int64_t n, float alpha) {
  const int64_t words = (n + 31) / 32;
#pragma omp parallel for schedule(static)
  for (int64_t w = 0; w < words; ++w) {
    const int64_t first = w * 32;
    const int count = static_cast<int>(std::min<int64_t>(32, n - first));
    const uint32_t word = bits[w];
#pragma omp simd
    for (int j = 0; j < count; ++j) {
      const float x = (word >> j) & 1u ? 1.0f : -1.0f;
      dx[first + j] = from_float<T>(activation_backward<K>(x, x, to_float(dy[first + j]), alpha));
    }
  }
}

}  // namespace

void Activation::keep_sign_only(const Tensor& y) {
  sign_bits_ = Tensor::empty(Shape{(y.numel() + 31) / 32}, DType::f32);  // 32-bit words
  with_storage_type(y.dtype(), [&](auto storage) {
    sign_bits_of(y.data<decltype(storage)>(), static_cast<uint32_t*>(sign_bits_.raw()), y.numel());
  });
  x_ = Tensor();
  y_ = Tensor();
}

void Activation::backward_cpu_into(const Tensor& dy, const Tensor& dx) const {
  with_storage_type(dy.dtype(), [&](auto storage) {
    using T = decltype(storage);
    with_activation_kind(kind_, [&](auto kind) {
      constexpr ActivationKind K = decltype(kind)::value;
      if (sign_bits_.defined()) {
        if constexpr (activation_backward_reads_input(K))
          backward_loop_from_sign<K>(static_cast<const uint32_t*>(sign_bits_.raw()), dy.data<T>(),
                                     dx.data<T>(), dy.numel(), alpha_);
        return;
      }
      const T* xs = x_.defined() ? x_.data<T>() : nullptr;
      const T* ys = y_.defined() ? y_.data<T>() : nullptr;
      if (dx.raw() == dy.raw())
        backward_loop_in_place<K>(xs, ys, dx.data<T>(), dx.numel(), alpha_);
      else
        backward_loop<K>(xs, ys, dy.data<T>(), dx.data<T>(), dy.numel(), alpha_);
    });
  });
}

Tensor Activation::forward_cpu(const Tensor& x) {
  PDEGEN_CHECK(is_storage_type(x.dtype()), "activation takes fp32 or bf16, got {}", x.describe());
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device(), x.channel_block());
  with_storage_type(x.dtype(), [&](auto storage) {
    using T = decltype(storage);
    with_activation_kind(kind_, [&](auto kind) {
      forward_loop<decltype(kind)::value>(x.data<T>(), y.data<T>(), x.numel(), alpha_);
    });
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
  PDEGEN_CHECK(is_storage_type(x.dtype()), "activation takes fp32 or bf16, got {}", x.describe());
  // x is overwritten with y. Where the derivative reads x (ReLU, LeakyReLU), reading y instead gives
  // the same result, because runs_in_place() admits only kinds for which x > 0 exactly when y > 0.
  keep_for_backward(x, x);
  if (keeps_sign_only_) {
    x_ = Tensor();
    y_ = Tensor();
    sign_bits_ = Tensor::empty(Shape{(x.numel() + 31) / 32}, DType::f32);  // 32-bit words
  }
  with_storage_type(x.dtype(), [&](auto storage) {
    using T = decltype(storage);
    with_activation_kind(kind_, [&](auto kind) {
      constexpr ActivationKind K = decltype(kind)::value;
      if (!keeps_sign_only_)
        forward_loop_in_place<K>(x.data<T>(), x.numel(), alpha_);
      else if constexpr (activation_backward_reads_input(K))
        forward_loop_in_place_with_signs<K>(x.data<T>(), static_cast<uint32_t*>(sign_bits_.raw()), x.numel(),
                                            alpha_);
    });
  });
  return x;
}

Tensor Activation::backward_in_place_cpu(const Tensor& dy) {
  check_gradient(dy);
  backward_cpu_into(dy, dy);
  return dy;
}

}  // namespace pdegen

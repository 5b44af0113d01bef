// Activation on the CPU: one OpenMP simd loop over storage per kind, the kind chosen outside the loop
// (a switch per element would stop it vectorising). Element-wise, so layout-agnostic.
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

}  // namespace

Tensor Activation::forward_cpu(const Tensor& x) {
  PDEGEN_CHECK(x.dtype() == DType::f32, "activation computes in f32, got {}", x.describe());
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device(), x.channel_block());
  with_activation_kind(kind_, [&](auto kind) {
    forward_loop<decltype(kind)::value>(x.data<float>(), y.data<float>(), x.numel(), alpha_);
  });
  keep_for_backward(x, y);
  return y;
}

Tensor Activation::backward_cpu(const Tensor& dy) {
  check_gradient(dy);
  Tensor dx = Tensor::empty(dy.shape(), dy.dtype(), dy.device(), dy.channel_block());
  const float* xs = x_.defined() ? x_.data<float>() : nullptr;
  const float* ys = y_.defined() ? y_.data<float>() : nullptr;
  with_activation_kind(kind_, [&](auto kind) {
    backward_loop<decltype(kind)::value>(xs, ys, dy.data<float>(), dx.data<float>(), dy.numel(), alpha_);
  });
  return dx;
}

}  // namespace pdegen

// Activation on the CPU: the shared kernels in an OpenMP loop over storage.
#include "backend/cpu/parallel.hpp"
#include "nn/activation.hpp"

namespace pdegen {

Tensor Activation::forward_cpu(const Tensor& x) {
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device(), x.channel_block());
  const float* xs = x.data<float>();
  float* ys = y.data<float>();
  const ActivationKind k = kind_;
  const float a = alpha_;
  cpu::parallel_for(x.numel(), [=](int64_t i) { ys[i] = activation_forward(k, xs[i], a); });
  x_ = x;
  y_ = y;
  return y;
}

Tensor Activation::backward_cpu(const Tensor& dy) {
  PDEGEN_CHECK(dy.shape() == x_.shape() && dy.channel_block() == x_.channel_block(),
               "activation backward got {}, forward saw {}", dy.describe(), x_.describe());
  Tensor dx = Tensor::empty(dy.shape(), dy.dtype(), dy.device(), dy.channel_block());
  const float *xs = x_.data<float>(), *ys = y_.data<float>(), *g = dy.data<float>();
  float* out = dx.data<float>();
  const ActivationKind k = kind_;
  const float a = alpha_;
  cpu::parallel_for(dy.numel(), [=](int64_t i) { out[i] = activation_backward(k, xs[i], ys[i], g[i], a); });
  return dx;
}

}  // namespace pdegen

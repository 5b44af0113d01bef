// Activation on the GPU: one grid-stride kernel per kind over storage, running the same
// activation_kernels.hpp arithmetic as the CPU loop. Element-wise, so layout-agnostic.
#include <algorithm>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_context.hpp"
#include "nn/activation.hpp"

namespace pdegen {

namespace {

template <ActivationKind K>
__global__ void forward_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t n, float alpha) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    y[i] = activation_forward<K>(x[i], alpha);
}

// x or y may be null where the kind's derivative does not read it.
template <ActivationKind K>
__global__ void backward_kernel(const float* __restrict__ x, const float* __restrict__ y,
                                const float* __restrict__ dy, float* __restrict__ dx, int64_t n,
                                float alpha) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const float xi = activation_backward_reads_input(K) ? x[i] : 0.0f;
    const float yi = activation_backward_reads_output(K) ? y[i] : 0.0f;
    dx[i] = activation_backward<K>(xi, yi, dy[i], alpha);
  }
}

unsigned grid_for(int64_t n) { return std::min(cuda::blocks_for(n), 65535u); }

}  // namespace

Tensor Activation::forward_cuda(const Tensor& x) {
  PDEGEN_CHECK(x.dtype() == DType::f32, "activation computes in f32, got {}", x.describe());
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device(), x.channel_block());
  const int64_t n = x.numel();
  if (n > 0)
    with_activation_kind(kind_, [&](auto kind) {
      forward_kernel<decltype(kind)::value>
          <<<grid_for(n), 256, 0, cuda::stream()>>>(x.data<float>(), y.data<float>(), n, alpha_);
    });
  CUDA_CHECK_LAUNCH();
  keep_for_backward(x, y);
  return y;
}

Tensor Activation::backward_cuda(const Tensor& dy) {
  check_gradient(dy);
  Tensor dx = Tensor::empty(dy.shape(), dy.dtype(), dy.device(), dy.channel_block());
  const float* xs = x_.defined() ? x_.data<float>() : nullptr;
  const float* ys = y_.defined() ? y_.data<float>() : nullptr;
  const int64_t n = dy.numel();
  if (n > 0)
    with_activation_kind(kind_, [&](auto kind) {
      backward_kernel<decltype(kind)::value>
          <<<grid_for(n), 256, 0, cuda::stream()>>>(xs, ys, dy.data<float>(), dx.data<float>(), n, alpha_);
    });
  CUDA_CHECK_LAUNCH();
  return dx;
}

}  // namespace pdegen

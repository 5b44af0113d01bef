// Activation on the GPU: one grid-stride kernel per kind and storage type (fp32, fp16, bf16) over
// storage, running the same activation_kernels.hpp arithmetic as the CPU loop in fp32: 16-bit values
// are widened on load and rounded once on store. Element-wise, so layout-agnostic.
#include <algorithm>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_context.hpp"
#include "nn/activation.hpp"

namespace pdegen {

namespace {

template <ActivationKind K, class T>
__global__ void forward_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n, float alpha) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    y[i] = from_float<T>(activation_forward<K>(to_float(x[i]), alpha));
}

// x or y may be null where the kind's derivative does not read it.
template <ActivationKind K, class T>
__global__ void backward_kernel(const T* __restrict__ x, const T* __restrict__ y, const T* __restrict__ dy,
                                T* __restrict__ dx, int64_t n, float alpha) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const float xi = activation_backward_reads_input(K) ? to_float(x[i]) : 0.0f;
    const float yi = activation_backward_reads_output(K) ? to_float(y[i]) : 0.0f;
    dx[i] = from_float<T>(activation_backward<K>(xi, yi, to_float(dy[i]), alpha));
  }
}

unsigned grid_for(int64_t n) { return std::min(cuda::blocks_for(n), 65535u); }

}  // namespace

Tensor Activation::forward_cuda(const Tensor& x) {
  PDEGEN_CHECK(is_storage_type(x.dtype()), "activation on the GPU takes fp32, fp16 or bf16, got {}",
               x.describe());
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device(), x.channel_block());
  const int64_t n = x.numel();
  if (n > 0) {
    with_storage_type(x.dtype(), [&](auto storage) {
      using T = decltype(storage);
      with_activation_kind(kind_, [&](auto kind) {
        forward_kernel<decltype(kind)::value, T>
            <<<grid_for(n), 256, 0, cuda::stream()>>>(x.data<T>(), y.data<T>(), n, alpha_);
      });
    });
    CUDA_CHECK_LAUNCH();
  }
  keep_for_backward(x, y);
  return y;
}

Tensor Activation::backward_cuda(const Tensor& dy) {
  check_gradient(dy);  // dy has the forward input's dtype, so x_ and y_ (where kept) have it too
  Tensor dx = Tensor::empty(dy.shape(), dy.dtype(), dy.device(), dy.channel_block());
  const int64_t n = dy.numel();
  if (n > 0) {
    with_storage_type(dy.dtype(), [&](auto storage) {
      using T = decltype(storage);
      const T* xs = x_.defined() ? x_.data<T>() : nullptr;
      const T* ys = y_.defined() ? y_.data<T>() : nullptr;
      with_activation_kind(kind_, [&](auto kind) {
        backward_kernel<decltype(kind)::value, T>
            <<<grid_for(n), 256, 0, cuda::stream()>>>(xs, ys, dy.data<T>(), dx.data<T>(), n, alpha_);
      });
    });
    CUDA_CHECK_LAUNCH();
  }
  return dx;
}

}  // namespace pdegen

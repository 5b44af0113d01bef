// Concat on the GPU: one thread per output element (plain [N, Ca + Cb, ...]) reads its value from a
// or b through their layouts in forward; backward writes each input's part of dy back into that
// input's layout the same way. Pure copies: the values are exact.
#include <algorithm>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_context.hpp"
#include "nn/concat.hpp"

namespace pdegen {

namespace {

// Element (n, c, s) of a tensor with C channels, S positions, channel block b.
__device__ int64_t offset(int64_t n, int64_t c, int64_t s, int64_t C, int64_t S, int64_t b) {
  return ((n * (C / b) + c / b) * S + s) * b + c % b;
}

struct Part {
  int64_t C, block;
};

// Copies between the plain output (N, Ca + Cb, S) and the two parts; kGather: y from a and b,
// otherwise da and db from y. One thread per element of y, in y's storage order (coalesced there).
template <bool kGather, class T>
__global__ void concat_kernel(int64_t N, int64_t S, Part pa, Part pb, T* __restrict__ y, T* __restrict__ a,
                              T* __restrict__ b) {
  const int64_t C = pa.C + pb.C, total = N * C * S;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t s = i % S, c = i / S % C, n = i / S / C;
    T* part = c < pa.C ? a + offset(n, c, s, pa.C, S, pa.block) : b + offset(n, c - pa.C, s, pb.C, S, pb.block);
    if constexpr (kGather)
      y[i] = *part;
    else
      *part = y[i];
  }
}

// The same copies on raw element bits, so every dtype (fp32, fp16, bf16, fp64) moves unchanged.
template <bool kGather>
void launch(size_t element, int64_t N, int64_t S, Part pa, Part pb, void* y, void* a, void* b) {
  const int64_t total = N * (pa.C + pb.C) * S;
  const unsigned grid = std::min(cuda::blocks_for(total), 65535u);
  cudaStream_t stream = cuda::stream();
  switch (element) {
    case 2:
      concat_kernel<kGather><<<grid, 256, 0, stream>>>(N, S, pa, pb, static_cast<uint16_t*>(y),
                                                       static_cast<uint16_t*>(a), static_cast<uint16_t*>(b));
      break;
    case 4:
      concat_kernel<kGather><<<grid, 256, 0, stream>>>(N, S, pa, pb, static_cast<uint32_t*>(y),
                                                       static_cast<uint32_t*>(a), static_cast<uint32_t*>(b));
      break;
    case 8:
      concat_kernel<kGather><<<grid, 256, 0, stream>>>(N, S, pa, pb, static_cast<uint64_t*>(y),
                                                       static_cast<uint64_t*>(a), static_cast<uint64_t*>(b));
      break;
    default:
      PDEGEN_THROW("concat of {}-byte elements", element);
  }
  CUDA_CHECK_LAUNCH();
}

}  // namespace

Tensor Concat::forward_cuda(const Tensor& a, const Tensor& b) {
  Tensor y = Tensor::empty(output_shape(a.shape(), b.shape()), a.dtype(), a.device(), 1);
  launch<true>(dtype_size(a.dtype()), a.dim(0), a.shape().spatial(), Part{a.dim(1), a.channel_block()},
               Part{b.dim(1), b.channel_block()}, y.raw(), a.raw(), b.raw());
  a_shape_ = a.shape();
  b_shape_ = b.shape();
  a_block_ = a.channel_block();
  b_block_ = b.channel_block();
  out_block_ = 1;
  has_forward_ = true;
  return y;
}

std::pair<Tensor, Tensor> Concat::backward_cuda(const Tensor& dy) {
  PDEGEN_CHECK(dy.is_plain(), "concat backward on the GPU takes a plain dy, got {}", dy.describe());
  Tensor da = Tensor::empty(a_shape_, dy.dtype(), dy.device(), a_block_);
  Tensor db = Tensor::empty(b_shape_, dy.dtype(), dy.device(), b_block_);
  launch<false>(dtype_size(dy.dtype()), dy.dim(0), dy.shape().spatial(), Part{a_shape_[1], a_block_},
                Part{b_shape_[1], b_block_}, dy.raw(), da.raw(), db.raw());
  return {da, db};
}

}  // namespace pdegen

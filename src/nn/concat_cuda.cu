// Concat on the GPU: one thread per output element (plain [N, Ca + Cb, ...]) reads its value from a
// or b through their layouts in forward; backward writes each input's part of dy back into that
// input's layout the same way. Pure copies: the values are exact.
#include <algorithm>
#include <cstdint>
#include <limits>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_context.hpp"
#include "core/blocked_layout.hpp"
#include "nn/concat.hpp"

namespace pdegen {

namespace {

struct Part {
  int64_t C, block;
};

// Copies between the plain output (N, Ca + Cb, S) and the two parts; kGather: y from a and b,
// otherwise da and db from y. One thread per element of y, in y's storage order (coalesced there).
// Index: int32_t where every offset fits (a 32-bit division is several times cheaper), else int64_t.
template <bool kGather, class Index, class T>
__global__ void concat_kernel(int64_t n_samples, int64_t n_spatial, Part pa, Part pb, T* __restrict__ y,
                              T* __restrict__ a, T* __restrict__ b) {
  const Index S = static_cast<Index>(n_spatial), Ca = static_cast<Index>(pa.C), Cb = static_cast<Index>(pb.C);
  const Index ba = static_cast<Index>(pa.block), bb = static_cast<Index>(pb.block), C = Ca + Cb;
  const Index total = static_cast<Index>(n_samples) * C * S;
  const Index stride = static_cast<Index>(gridDim.x) * static_cast<Index>(blockDim.x);
  for (Index i =
           static_cast<Index>(blockIdx.x) * static_cast<Index>(blockDim.x) + static_cast<Index>(threadIdx.x);
       i < total; i += stride) {
    const Index s = i % S, c = i / S % C, n = i / S / C;
    T* part = c < Ca ? a + blocked_offset(n, c, s, Ca, S, ba) : b + blocked_offset(n, c - Ca, s, Cb, S, bb);
    if constexpr (kGather)
      y[i] = *part;
    else
      *part = y[i];
  }
}

// The copies on raw element bits of T's size, with 32-bit indices where they fit.
template <bool kGather, class T>
void launch_typed(int64_t N, int64_t S, Part pa, Part pb, void* y, void* a, void* b) {
  const int64_t total = N * (pa.C + pb.C) * S;
  const unsigned grid = std::min(cuda::blocks_for(total), 65535u);
  cudaStream_t stream = cuda::stream();
  T *ty = static_cast<T*>(y), *ta = static_cast<T*>(a), *tb = static_cast<T*>(b);
  // The grid-stride loop's last step may pass `total` by one stride: that must fit too.
  if (total + int64_t{grid} * 256 < std::numeric_limits<int32_t>::max())
    concat_kernel<kGather, int32_t><<<grid, 256, 0, stream>>>(N, S, pa, pb, ty, ta, tb);
  else
    concat_kernel<kGather, int64_t><<<grid, 256, 0, stream>>>(N, S, pa, pb, ty, ta, tb);
  CUDA_CHECK_LAUNCH();
}

// The same copies for every dtype (fp32, fp16, bf16, fp64): they move bits unchanged.
template <bool kGather>
void launch(size_t element, int64_t N, int64_t S, Part pa, Part pb, void* y, void* a, void* b) {
  if (N * (pa.C + pb.C) * S == 0) return;
  switch (element) {
    case 2:
      return launch_typed<kGather, uint16_t>(N, S, pa, pb, y, a, b);
    case 4:
      return launch_typed<kGather, uint32_t>(N, S, pa, pb, y, a, b);
    case 8:
      return launch_typed<kGather, uint64_t>(N, S, pa, pb, y, a, b);
    default:
      PDEGEN_THROW("concat of {}-byte elements", element);
  }
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

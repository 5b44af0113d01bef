// Nearest up-sampling on the GPU: forward is one thread per output element reading its parent;
// backward is one thread per input element summing its 2^d children in the CPU's order (pairs along
// x, then rows), so both backends give the same bits. Any channel block: indices go through the
// tensors' layouts, and dy may come in a layout other than the input's. Index arithmetic is 32-bit
// where the tensor allows (a 32-bit division is several times cheaper than a 64-bit one). Activations
// may be fp32, fp16 or bf16 (x, y, dy, dx of one type): forward copies values unchanged, backward sums
// in fp32 and rounds once.
#include <algorithm>
#include <cstdint>
#include <limits>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_context.hpp"
#include "core/blocked_layout.hpp"
#include "nn/upsample.hpp"

namespace pdegen {

namespace {

// Input extents (2D as a depth of 1) and how many copies along depth (2 in 3D, 1 in 2D).
struct Geometry {
  int64_t N, C, D, H, W, z_copies;
  int64_t out_numel() const { return N * C * z_copies * D * 4 * H * W; }
};

template <class Index>
struct Extents {
  Index N, C, D, H, W, z;
  __device__ explicit Extents(const Geometry& g)
      : N(static_cast<Index>(g.N)),
        C(static_cast<Index>(g.C)),
        D(static_cast<Index>(g.D)),
        H(static_cast<Index>(g.H)),
        W(static_cast<Index>(g.W)),
        z(static_cast<Index>(g.z_copies)) {}
};

template <class Index, class T>
__global__ void forward_kernel(Geometry geometry, int64_t channel_block, const T* __restrict__ x,
                               T* __restrict__ y) {
  const Extents<Index> g(geometry);
  const Index b = static_cast<Index>(channel_block), Wo = 2 * g.W, Ho = 2 * g.H;
  const Index S_in = g.D * g.H * g.W, S_out = g.z * g.D * Ho * Wo, total = g.N * g.C * S_out;
  const Index stride = static_cast<Index>(gridDim.x) * static_cast<Index>(blockDim.x);
  for (Index i =
           static_cast<Index>(blockIdx.x) * static_cast<Index>(blockDim.x) + static_cast<Index>(threadIdx.x);
       i < total; i += stride) {
    Index n, c, o;
    blocked_position(i, g.C, S_out, b, n, c, o);
    const Index X = o % Wo, Y = o / Wo % Ho, Z = o / Wo / Ho;
    const Index s = ((Z / g.z) * g.H + Y / 2) * g.W + X / 2;
    y[i] = x[blocked_offset(n, c, s, g.C, S_in, b)];
  }
}

template <class Index, class T>
__global__ void backward_kernel(Geometry geometry, int64_t channel_block, int64_t dy_channel_block,
                                const T* __restrict__ dy, T* __restrict__ dx) {
  const Extents<Index> g(geometry);
  const Index b = static_cast<Index>(channel_block), bdy = static_cast<Index>(dy_channel_block);
  const Index Wo = 2 * g.W, Ho = 2 * g.H;
  const Index S_in = g.D * g.H * g.W, S_out = g.z * g.D * Ho * Wo, total = g.N * g.C * S_in;
  const Index stride = static_cast<Index>(gridDim.x) * static_cast<Index>(blockDim.x);
  for (Index i =
           static_cast<Index>(blockIdx.x) * static_cast<Index>(blockDim.x) + static_cast<Index>(threadIdx.x);
       i < total; i += stride) {
    Index n, c, s;
    blocked_position(i, g.C, S_in, b, n, c, s);
    const Index x = s % g.W, y = s / g.W % g.H, z = s / g.W / g.H;
    float acc = 0.0f;
    for (Index a = 0; a < g.z; ++a)
      for (Index e = 0; e < 2; ++e) {
        const Index row = ((g.z * z + a) * Ho + 2 * y + e) * Wo + 2 * x;
        acc += to_float(dy[blocked_offset(n, c, row, g.C, S_out, bdy)]) +
               to_float(dy[blocked_offset(n, c, row + 1, g.C, S_out, bdy)]);
      }
    dx[i] = from_float<T>(acc);
  }
}

Geometry geometry_of(const Shape& in, int ndim) {
  return Geometry{in[0], in[1], ndim == 3 ? in[2] : 1, in[-2], in[-1], ndim == 3 ? 2 : 1};
}

unsigned grid_for(int64_t n) { return std::min(cuda::blocks_for(n), 65535u); }

// Whether indices up to n, and one grid stride past it, fit in int32.
bool fits_int32(int64_t n) { return n + int64_t{grid_for(n)} * 256 < std::numeric_limits<int32_t>::max(); }

}  // namespace

Tensor Upsample::forward_cuda(const Tensor& x) {
  const Geometry g = geometry_of(x.shape(), ndim_);
  Tensor y = Tensor::empty(output_shape(x.shape()), x.dtype(), x.device(), x.channel_block());
  const int64_t n = y.numel();
  if (n > 0) {
    with_storage_type(x.dtype(), [&](auto storage) {
      using T = decltype(storage);
      if (fits_int32(n))
        forward_kernel<int32_t, T>
            <<<grid_for(n), 256, 0, cuda::stream()>>>(g, x.channel_block(), x.data<T>(), y.data<T>());
      else
        forward_kernel<int64_t, T>
            <<<grid_for(n), 256, 0, cuda::stream()>>>(g, x.channel_block(), x.data<T>(), y.data<T>());
    });
    CUDA_CHECK_LAUNCH();
  }
  in_shape_ = x.shape();
  in_block_ = x.channel_block();
  has_forward_ = true;
  return y;
}

Tensor Upsample::backward_cuda(const Tensor& dy) {
  const Geometry g = geometry_of(in_shape_, ndim_);
  Tensor dx = Tensor::empty(in_shape_, dy.dtype(), dy.device(), in_block_);
  const int64_t n = dx.numel();
  if (n > 0) {
    with_storage_type(dy.dtype(), [&](auto storage) {
      using T = decltype(storage);
      // dy has 2^d times dx's elements: its offsets decide the index width.
      if (fits_int32(g.out_numel()))
        backward_kernel<int32_t, T><<<grid_for(n), 256, 0, cuda::stream()>>>(g, in_block_, dy.channel_block(),
                                                                             dy.data<T>(), dx.data<T>());
      else
        backward_kernel<int64_t, T><<<grid_for(n), 256, 0, cuda::stream()>>>(g, in_block_, dy.channel_block(),
                                                                             dy.data<T>(), dx.data<T>());
    });
    CUDA_CHECK_LAUNCH();
  }
  return dx;
}

}  // namespace pdegen

// Pooling on the GPU, hand-written (index arithmetic in int32 where the tensors allow): one thread per output
// element in forward (max pooling records the winner's position in its window, the first maximum on ties, as
// oneDNN), one thread per input element in backward, gathering dy from every window that contains it in a
// fixed order (no atomics, so overlapping windows sum the same way every run). Any channel block: indices go
// through the tensors' layouts, and dy may come in a layout other than the input's. Activations may be fp32,
// fp16 or bf16 (x, y, dy, dx of one type): sums and comparisons in fp32, one rounding per stored value (the
// maximum is one of the inputs, so max pooling's y is exact).
#include <algorithm>
#include <cstdint>
#include <limits>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_context.hpp"
#include "core/blocked_layout.hpp"
#include "nn/pool.hpp"

namespace pdegen {

namespace {

// Extents of one pooling call, 2D as 3D with a depth of 1 and a 1-wide window along it.
struct Geometry {
  int64_t N, C;
  int64_t in[3], out[3];  // D, H, W
  int k[3], s[3], p[3];
  int window;
};

Geometry geometry_of(const Shape& in, const Shape& out, const PoolConfig& config) {
  Geometry g{};
  g.N = in[0];
  g.C = in[1];
  const int nd = config.ndim;
  for (int a = 0; a < 3; ++a) {
    const int axis = a - (3 - nd);  // spatial axis of `in`, or < 0 for 2D's missing depth
    const bool real = axis >= 0;
    g.in[a] = real ? in[2 + axis] : 1;
    g.out[a] = real ? out[2 + axis] : 1;
    g.k[a] = real ? config.kernel : 1;
    g.s[a] = real ? config.effective_stride() : 1;
    g.p[a] = real ? config.padding : 0;
  }
  g.window = g.k[0] * g.k[1] * g.k[2];
  return g;
}

// The geometry in the kernel's index type (int32_t where the tensors allow: cheaper divisions).
template <class Index>
struct Extents {
  Index N, C, in[3], out[3], k[3], s[3], p[3], window;
  __device__ explicit Extents(const Geometry& g) : N(static_cast<Index>(g.N)), C(static_cast<Index>(g.C)) {
    for (int a = 0; a < 3; ++a) {
      in[a] = static_cast<Index>(g.in[a]);
      out[a] = static_cast<Index>(g.out[a]);
      k[a] = g.k[a];
      s[a] = g.s[a];
      p[a] = g.p[a];
    }
    window = g.window;
  }
};

template <bool kMax, class Index, class T>
__global__ void forward_kernel(Geometry geometry, int64_t channel_block, const T* __restrict__ x,
                               T* __restrict__ y, int32_t* __restrict__ argmax) {
  const Extents<Index> g(geometry);
  const Index block = static_cast<Index>(channel_block);
  const Index S_in = g.in[0] * g.in[1] * g.in[2], S_out = g.out[0] * g.out[1] * g.out[2];
  const Index total = g.N * g.C * S_out;
  const Index stride = static_cast<Index>(gridDim.x) * static_cast<Index>(blockDim.x);
  for (Index i =
           static_cast<Index>(blockIdx.x) * static_cast<Index>(blockDim.x) + static_cast<Index>(threadIdx.x);
       i < total; i += stride) {
    Index n, c, o;
    blocked_position(i, g.C, S_out, block, n, c, o);
    const Index ox = o % g.out[2], oy = o / g.out[2] % g.out[1], oz = o / g.out[2] / g.out[1];
    float acc = 0.0f;
    int best = -1;
    for (Index kz = 0; kz < g.k[0]; ++kz) {
      const Index iz = oz * g.s[0] - g.p[0] + kz;
      if (iz < 0 || iz >= g.in[0]) continue;
      for (Index ky = 0; ky < g.k[1]; ++ky) {
        const Index iy = oy * g.s[1] - g.p[1] + ky;
        if (iy < 0 || iy >= g.in[1]) continue;
        for (Index kx = 0; kx < g.k[2]; ++kx) {
          const Index ix = ox * g.s[2] - g.p[2] + kx;
          if (ix < 0 || ix >= g.in[2]) continue;
          const float v =
              to_float(x[blocked_offset(n, c, (iz * g.in[1] + iy) * g.in[2] + ix, g.C, S_in, block)]);
          if constexpr (kMax) {
            if (best < 0 || v > acc) {
              acc = v;
              best = static_cast<int>((kz * g.k[1] + ky) * g.k[2] + kx);
            }
          } else {
            acc += v;
          }
        }
      }
    }
    // Padding is at most kernel / 2, so every window holds at least one input element.
    if constexpr (kMax) {
      y[i] = from_float<T>(acc);
      argmax[i] = best;
    } else {
      y[i] = from_float<T>(acc / static_cast<float>(g.window));
    }
  }
}

// First and last output index along an axis whose windows contain input index i.
template <class Index>
__device__ void windows_of(Index i, Index k, Index s, Index p, Index extent, Index& first, Index& last) {
  const Index lo = i + p - k + 1;  // o * s >= lo
  first = lo <= 0 ? 0 : (lo + s - 1) / s;
  last = min((i + p) / s, extent - 1);
}

template <bool kMax, class Index, class T>
__global__ void backward_kernel(Geometry geometry, int64_t channel_block, int64_t dy_channel_block,
                                const T* __restrict__ dy, const int32_t* __restrict__ argmax,
                                T* __restrict__ dx) {
  const Extents<Index> g(geometry);
  const Index block = static_cast<Index>(channel_block), dy_block = static_cast<Index>(dy_channel_block);
  const Index S_in = g.in[0] * g.in[1] * g.in[2], S_out = g.out[0] * g.out[1] * g.out[2];
  const Index total = g.N * g.C * S_in;
  const Index stride = static_cast<Index>(gridDim.x) * static_cast<Index>(blockDim.x);
  for (Index i =
           static_cast<Index>(blockIdx.x) * static_cast<Index>(blockDim.x) + static_cast<Index>(threadIdx.x);
       i < total; i += stride) {
    Index n, c, s;
    blocked_position(i, g.C, S_in, block, n, c, s);
    const Index ix = s % g.in[2], iy = s / g.in[2] % g.in[1], iz = s / g.in[2] / g.in[1];
    Index z0, z1, y0, y1, x0, x1;
    windows_of(iz, g.k[0], g.s[0], g.p[0], g.out[0], z0, z1);
    windows_of(iy, g.k[1], g.s[1], g.p[1], g.out[1], y0, y1);
    windows_of(ix, g.k[2], g.s[2], g.p[2], g.out[2], x0, x1);
    float acc = 0.0f;
    for (Index oz = z0; oz <= z1; ++oz)
      for (Index oy = y0; oy <= y1; ++oy)
        for (Index ox = x0; ox <= x1; ++ox) {
          const Index o = (oz * g.out[1] + oy) * g.out[2] + ox;
          const float grad = to_float(dy[blocked_offset(n, c, o, g.C, S_out, dy_block)]);
          if constexpr (kMax) {
            // The position of this input element in window o, as forward numbered it.
            const Index w =
                ((iz - (oz * g.s[0] - g.p[0])) * g.k[1] + (iy - (oy * g.s[1] - g.p[1]))) * g.k[2] +
                (ix - (ox * g.s[2] - g.p[2]));
            if (argmax[blocked_offset(n, c, o, g.C, S_out, block)] == static_cast<int32_t>(w)) acc += grad;
          } else {
            acc += grad;
          }
        }
    dx[i] = from_float<T>(kMax ? acc : acc / static_cast<float>(g.window));
  }
}

unsigned grid_for(int64_t n) { return std::min(cuda::blocks_for(n), 65535u); }

// Whether indices up to n, and one grid stride past it, fit in int32.
bool fits_int32(int64_t n) { return n + int64_t{grid_for(n)} * 256 < std::numeric_limits<int32_t>::max(); }

}  // namespace

Tensor Pool::forward_cuda(const Tensor& x) {
  const int block = x.channel_block();
  const Shape out_shape = output_shape(x.shape());
  const Geometry g = geometry_of(x.shape(), out_shape, config_);
  Tensor y = Tensor::empty(out_shape, x.dtype(), x.device(), block);
  const bool is_max = algorithm_ == Algorithm::max;
  // A fresh workspace each call (the caching allocator recycles it), as on the CPU.
  cuda_argmax_ = is_max ? Tensor::empty(out_shape, DType::f32, x.device()) : Tensor();
  int32_t* argmax = is_max ? static_cast<int32_t*>(cuda_argmax_.raw()) : nullptr;
  const int64_t n = y.numel();
  if (n > 0) {
    // Input offsets stay below the output's count times the window: int32 when both fit.
    const bool narrow = fits_int32(std::max(n, x.numel()));
    with_storage_type(x.dtype(), [&](auto storage) {
      using T = decltype(storage);
      const T* xs = x.data<T>();
      T* ys = y.data<T>();
      if (is_max && narrow)
        forward_kernel<true, int32_t, T><<<grid_for(n), 256, 0, cuda::stream()>>>(g, block, xs, ys, argmax);
      else if (is_max)
        forward_kernel<true, int64_t, T><<<grid_for(n), 256, 0, cuda::stream()>>>(g, block, xs, ys, argmax);
      else if (narrow)
        forward_kernel<false, int32_t, T><<<grid_for(n), 256, 0, cuda::stream()>>>(g, block, xs, ys, argmax);
      else
        forward_kernel<false, int64_t, T><<<grid_for(n), 256, 0, cuda::stream()>>>(g, block, xs, ys, argmax);
    });
  }
  CUDA_CHECK_LAUNCH();
  in_shape_ = x.shape();
  in_block_ = block;
  has_forward_ = true;
  return y;
}

Tensor Pool::backward_cuda(const Tensor& dy) {
  const Geometry g = geometry_of(in_shape_, dy.shape(), config_);
  Tensor dx = Tensor::empty(in_shape_, dy.dtype(), dy.device(), in_block_);
  const bool is_max = algorithm_ == Algorithm::max;
  PDEGEN_CHECK(!is_max || cuda_argmax_.defined(), "{} backward on the GPU after a forward elsewhere", kind());
  const int32_t* argmax = is_max ? static_cast<const int32_t*>(cuda_argmax_.raw()) : nullptr;
  const int64_t n = dx.numel();
  if (n > 0) {
    const bool narrow = fits_int32(std::max(n, dy.numel()));
    const int dy_block = dy.channel_block();
    with_storage_type(dy.dtype(), [&](auto storage) {
      using T = decltype(storage);
      const T* gs = dy.data<T>();
      T* dxs = dx.data<T>();
      if (is_max && narrow)
        backward_kernel<true, int32_t, T>
            <<<grid_for(n), 256, 0, cuda::stream()>>>(g, in_block_, dy_block, gs, argmax, dxs);
      else if (is_max)
        backward_kernel<true, int64_t, T>
            <<<grid_for(n), 256, 0, cuda::stream()>>>(g, in_block_, dy_block, gs, argmax, dxs);
      else if (narrow)
        backward_kernel<false, int32_t, T>
            <<<grid_for(n), 256, 0, cuda::stream()>>>(g, in_block_, dy_block, gs, argmax, dxs);
      else
        backward_kernel<false, int64_t, T>
            <<<grid_for(n), 256, 0, cuda::stream()>>>(g, in_block_, dy_block, gs, argmax, dxs);
    });
  }
  CUDA_CHECK_LAUNCH();
  return dx;
}

}  // namespace pdegen

// Pooling on the GPU, hand-written: one thread per output element in forward (max pooling records the
// winner's position in its window, the first maximum on ties, as oneDNN), one thread per input element
// in backward, gathering dy from every window that contains it in a fixed order (no atomics, so
// overlapping windows sum the same way every run). Any channel block: indices go through the
// tensors' layouts, and dy may come in a layout other than the input's.
#include <algorithm>
#include <cstdint>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_context.hpp"
#include "nn/pool.hpp"

namespace pdegen {

namespace {

// Extents of one pooling call, 2D as 3D with a depth of 1 and a 1-wide window along it.
struct Geometry {
  int64_t N, C;
  int64_t in[3], out[3];  // D, H, W
  int k[3], s[3], p[3];
  int window;
  __host__ __device__ int64_t in_spatial() const { return in[0] * in[1] * in[2]; }
  __host__ __device__ int64_t out_spatial() const { return out[0] * out[1] * out[2]; }
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

// Storage offset of (n, c, s) in a tensor of C channels, S positions, channel block b.
__device__ int64_t offset(int64_t n, int64_t c, int64_t s, int64_t C, int64_t S, int64_t b) {
  return ((n * (C / b) + c / b) * S + s) * b + c % b;
}

// Logical (n, c, s) of storage index i.
__device__ void logical(int64_t i, int64_t C, int64_t S, int64_t b, int64_t& n, int64_t& c, int64_t& s) {
  const int64_t lane = i % b, q = i / b, r = q / S;
  s = q % S;
  c = r % (C / b) * b + lane;
  n = r / (C / b);
}

template <bool kMax>
__global__ void forward_kernel(Geometry g, int64_t block, const float* __restrict__ x, float* __restrict__ y,
                               int32_t* __restrict__ argmax) {
  const int64_t S_in = g.in_spatial(), S_out = g.out_spatial(), total = g.N * g.C * S_out;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
    int64_t n, c, o;
    logical(i, g.C, S_out, block, n, c, o);
    const int64_t ox = o % g.out[2], oy = o / g.out[2] % g.out[1], oz = o / g.out[2] / g.out[1];
    float acc = 0.0f;
    int best = -1;
    for (int kz = 0; kz < g.k[0]; ++kz) {
      const int64_t iz = oz * g.s[0] - g.p[0] + kz;
      if (iz < 0 || iz >= g.in[0]) continue;
      for (int ky = 0; ky < g.k[1]; ++ky) {
        const int64_t iy = oy * g.s[1] - g.p[1] + ky;
        if (iy < 0 || iy >= g.in[1]) continue;
        for (int kx = 0; kx < g.k[2]; ++kx) {
          const int64_t ix = ox * g.s[2] - g.p[2] + kx;
          if (ix < 0 || ix >= g.in[2]) continue;
          const float v = x[offset(n, c, (iz * g.in[1] + iy) * g.in[2] + ix, g.C, S_in, block)];
          if constexpr (kMax) {
            if (best < 0 || v > acc) {
              acc = v;
              best = (kz * g.k[1] + ky) * g.k[2] + kx;
            }
          } else {
            acc += v;
          }
        }
      }
    }
    // Padding is at most kernel / 2, so every window holds at least one input element.
    if constexpr (kMax) {
      y[i] = acc;
      argmax[i] = best;
    } else {
      y[i] = acc / static_cast<float>(g.window);
    }
  }
}

// First and last output index along an axis whose windows contain input index i.
__device__ void windows_of(int64_t i, int k, int s, int p, int64_t extent, int64_t& first, int64_t& last) {
  const int64_t lo = i + p - k + 1;  // o * s >= lo
  first = lo <= 0 ? 0 : (lo + s - 1) / s;
  last = min((i + p) / s, extent - 1);
}

template <bool kMax>
__global__ void backward_kernel(Geometry g, int64_t block, int64_t dy_block, const float* __restrict__ dy,
                                const int32_t* __restrict__ argmax, float* __restrict__ dx) {
  const int64_t S_in = g.in_spatial(), S_out = g.out_spatial(), total = g.N * g.C * S_in;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
    int64_t n, c, s;
    logical(i, g.C, S_in, block, n, c, s);
    const int64_t ix = s % g.in[2], iy = s / g.in[2] % g.in[1], iz = s / g.in[2] / g.in[1];
    int64_t z0, z1, y0, y1, x0, x1;
    windows_of(iz, g.k[0], g.s[0], g.p[0], g.out[0], z0, z1);
    windows_of(iy, g.k[1], g.s[1], g.p[1], g.out[1], y0, y1);
    windows_of(ix, g.k[2], g.s[2], g.p[2], g.out[2], x0, x1);
    float acc = 0.0f;
    for (int64_t oz = z0; oz <= z1; ++oz)
      for (int64_t oy = y0; oy <= y1; ++oy)
        for (int64_t ox = x0; ox <= x1; ++ox) {
          const int64_t o = (oz * g.out[1] + oy) * g.out[2] + ox;
          const float grad = dy[offset(n, c, o, g.C, S_out, dy_block)];
          if constexpr (kMax) {
            const int w = static_cast<int>(((iz - (oz * g.s[0] - g.p[0])) * g.k[1] + (iy - (oy * g.s[1] - g.p[1]))) *
                                               g.k[2] +
                                           (ix - (ox * g.s[2] - g.p[2])));
            if (argmax[offset(n, c, o, g.C, S_out, block)] == w) acc += grad;
          } else {
            acc += grad;
          }
        }
    dx[i] = kMax ? acc : acc / static_cast<float>(g.window);
  }
}

unsigned grid_for(int64_t n) { return std::min(cuda::blocks_for(n), 65535u); }

}  // namespace

Tensor Pool::forward_cuda(const Tensor& x) {
  const int block = x.channel_block();
  const Shape out_shape = output_shape(x.shape());
  const Geometry g = geometry_of(x.shape(), out_shape, config_);
  Tensor y = Tensor::empty(out_shape, DType::f32, x.device(), block);
  const bool is_max = algorithm_ == Algorithm::max;
  // A fresh workspace each call (the caching allocator recycles it), as on the CPU.
  cuda_argmax_ = is_max ? Tensor::empty(out_shape, DType::f32, x.device()) : Tensor();
  int32_t* argmax = is_max ? static_cast<int32_t*>(cuda_argmax_.raw()) : nullptr;
  if (is_max)
    forward_kernel<true><<<grid_for(y.numel()), 256, 0, cuda::stream()>>>(g, block, x.data<float>(),
                                                                         y.data<float>(), argmax);
  else
    forward_kernel<false><<<grid_for(y.numel()), 256, 0, cuda::stream()>>>(g, block, x.data<float>(),
                                                                          y.data<float>(), argmax);
  CUDA_CHECK_LAUNCH();
  in_shape_ = x.shape();
  in_block_ = block;
  has_forward_ = true;
  return y;
}

Tensor Pool::backward_cuda(const Tensor& dy) {
  const Geometry g = geometry_of(in_shape_, dy.shape(), config_);
  Tensor dx = Tensor::empty(in_shape_, DType::f32, dy.device(), in_block_);
  const bool is_max = algorithm_ == Algorithm::max;
  PDEGEN_CHECK(!is_max || cuda_argmax_.defined(), "{} backward on the GPU after a forward elsewhere", kind());
  const int32_t* argmax = is_max ? static_cast<const int32_t*>(cuda_argmax_.raw()) : nullptr;
  if (is_max)
    backward_kernel<true><<<grid_for(dx.numel()), 256, 0, cuda::stream()>>>(g, in_block_, dy.channel_block(),
                                                                          dy.data<float>(), argmax, dx.data<float>());
  else
    backward_kernel<false><<<grid_for(dx.numel()), 256, 0, cuda::stream()>>>(
        g, in_block_, dy.channel_block(), dy.data<float>(), argmax, dx.data<float>());
  CUDA_CHECK_LAUNCH();
  return dx;
}

}  // namespace pdegen

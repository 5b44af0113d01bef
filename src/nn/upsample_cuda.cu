// Nearest up-sampling on the GPU: forward is one thread per output element reading its parent;
// backward is one thread per input element summing its 2^d children in the CPU's order (pairs along
// x, then rows), so both backends give the same bits. Any channel block: indices go through the
// tensors' layouts, and dy may come in a layout other than the input's.
#include <algorithm>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_context.hpp"
#include "nn/upsample.hpp"

namespace pdegen {

namespace {

// Input extents (2D as a depth of 1) and whether depth doubles.
struct Geometry {
  int64_t N, C, D, H, W;
  int z_copies;
  __host__ __device__ int64_t in_spatial() const { return D * H * W; }
  __host__ __device__ int64_t out_spatial() const { return z_copies * D * 4 * H * W; }
};

__device__ int64_t offset(int64_t n, int64_t c, int64_t s, int64_t C, int64_t S, int64_t b) {
  return ((n * (C / b) + c / b) * S + s) * b + c % b;
}

__device__ void logical(int64_t i, int64_t C, int64_t S, int64_t b, int64_t& n, int64_t& c, int64_t& s) {
  const int64_t lane = i % b, q = i / b, r = q / S;
  s = q % S;
  c = r % (C / b) * b + lane;
  n = r / (C / b);
}

__global__ void forward_kernel(Geometry g, int64_t block, const float* __restrict__ x, float* __restrict__ y) {
  const int64_t S_in = g.in_spatial(), S_out = g.out_spatial(), total = g.N * g.C * S_out;
  const int64_t Wo = 2 * g.W, Ho = 2 * g.H;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
    int64_t n, c, o;
    logical(i, g.C, S_out, block, n, c, o);
    const int64_t X = o % Wo, Y = o / Wo % Ho, Z = o / Wo / Ho;
    const int64_t s = ((Z / g.z_copies) * g.H + Y / 2) * g.W + X / 2;
    y[i] = x[offset(n, c, s, g.C, S_in, block)];
  }
}

__global__ void backward_kernel(Geometry g, int64_t block, int64_t dy_block, const float* __restrict__ dy,
                                float* __restrict__ dx) {
  const int64_t S_in = g.in_spatial(), S_out = g.out_spatial(), total = g.N * g.C * S_in;
  const int64_t Wo = 2 * g.W, Ho = 2 * g.H;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
    int64_t n, c, s;
    logical(i, g.C, S_in, block, n, c, s);
    const int64_t x = s % g.W, y = s / g.W % g.H, z = s / g.W / g.H;
    float acc = 0.0f;
    for (int a = 0; a < g.z_copies; ++a)
      for (int e = 0; e < 2; ++e) {
        const int64_t row = ((g.z_copies * z + a) * Ho + 2 * y + e) * Wo + 2 * x;
        acc += dy[offset(n, c, row, g.C, S_out, dy_block)] + dy[offset(n, c, row + 1, g.C, S_out, dy_block)];
      }
    dx[i] = acc;
  }
}

Geometry geometry_of(const Shape& in, int ndim) {
  return Geometry{in[0], in[1], ndim == 3 ? in[2] : 1, in[-2], in[-1], ndim == 3 ? 2 : 1};
}

unsigned grid_for(int64_t n) { return std::min(cuda::blocks_for(n), 65535u); }

}  // namespace

Tensor Upsample::forward_cuda(const Tensor& x) {
  const Geometry g = geometry_of(x.shape(), ndim_);
  Tensor y = Tensor::empty(output_shape(x.shape()), DType::f32, x.device(), x.channel_block());
  forward_kernel<<<grid_for(y.numel()), 256, 0, cuda::stream()>>>(g, x.channel_block(), x.data<float>(),
                                                                  y.data<float>());
  CUDA_CHECK_LAUNCH();
  in_shape_ = x.shape();
  in_block_ = x.channel_block();
  has_forward_ = true;
  return y;
}

Tensor Upsample::backward_cuda(const Tensor& dy) {
  const Geometry g = geometry_of(in_shape_, ndim_);
  Tensor dx = Tensor::empty(in_shape_, DType::f32, dy.device(), in_block_);
  backward_kernel<<<grid_for(dx.numel()), 256, 0, cuda::stream()>>>(g, in_block_, dy.channel_block(),
                                                                   dy.data<float>(), dx.data<float>());
  CUDA_CHECK_LAUNCH();
  return dx;
}

}  // namespace pdegen

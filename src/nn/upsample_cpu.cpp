// Nearest up-sampling on the CPU. In either layout a tensor is N*C/b independent groups, each a
// [D,] H, W grid of "pixels" of b contiguous floats (b = 1 when plain), so one loop serves both: a
// work item is one input row (a fixed group, z, y) and the 2^d output rows it feeds, which are
// identical in forward (built once, then copied) and summed in backward.
#include <cstring>
#include <type_traits>
#include <vector>

#include "backend/cpu/parallel.hpp"
#include "nn/upsample.hpp"

namespace pdegen {

namespace {

// Extents of the row structure shared by forward and backward, from the (input) shape.
struct RowGeometry {
  int64_t rows = 0;      // input rows over all groups: N * C/b * D * H
  int64_t depth = 1;     // input D (1 in 2D)
  int64_t height = 0;    // input H
  int64_t width = 0;     // input W
  int64_t z_copies = 1;  // 2 in 3D, 1 in 2D
  int64_t block = 1;     // floats per pixel
  int64_t in_row = 0;    // floats per input row: W * b
  int64_t out_row = 0;   // floats per output row: 2 W * b

  RowGeometry(const Shape& in, int ndim, int channel_block) {
    block = channel_block;
    depth = ndim == 3 ? in[2] : 1;
    z_copies = ndim == 3 ? 2 : 1;
    height = in[-2];
    width = in[-1];
    rows = in[0] * (in[1] / block) * depth * height;
    in_row = width * block;
    out_row = 2 * in_row;
  }
  // First float of output row (group, 2z + a, 2y + e) for input row r = (group, z, y).
  int64_t out_offset(int64_t r, int64_t a, int64_t e) const {
    const int64_t y = r % height, gz = r / height, z = gz % depth, group = gz / depth;
    return ((group * z_copies * depth + z_copies * z + a) * 2 * height + 2 * y + e) * out_row;
  }
};

// The forward of every input row: each pixel twice along W, that row copied to the 2^d output rows.
template <class T>
void upsample_rows(const RowGeometry& g, const T* in, T* out) {
  cpu::parallel_for(g.rows, [&](int64_t r) {
    const T* src = in + r * g.in_row;
    T* first = out + g.out_offset(r, 0, 0);
    for (int64_t i = 0; i < g.width; ++i) {
      T* dst = first + 2 * i * g.block;
#pragma omp simd
      for (int64_t c = 0; c < g.block; ++c) dst[c] = dst[g.block + c] = src[i * g.block + c];
    }
    for (int64_t a = 0; a < g.z_copies; ++a)
      for (int64_t e = 0; e < 2; ++e)
        if (a + e > 0)
          std::memcpy(out + g.out_offset(r, a, e), first, static_cast<size_t>(g.out_row) * sizeof(T));
  });
}

// The backward: every input row's gradient is the sum of the 2^(d+1) output values it fed, summed
// in fp32 whatever the storage type: in place for fp32, else in an fp32 row stored once.
template <class T>
void sum_rows(const RowGeometry& g, const T* grad, T* out) {
  cpu::parallel_for(g.rows, [&](int64_t r) {
    thread_local std::vector<float> acc;
    float* sum = nullptr;
    if constexpr (std::is_same_v<T, float>) {
      sum = out + r * g.in_row;
      std::memset(sum, 0, static_cast<size_t>(g.in_row) * sizeof(float));
    } else {
      acc.assign(static_cast<size_t>(g.in_row), 0.0f);
      sum = acc.data();
    }
    for (int64_t a = 0; a < g.z_copies; ++a)
      for (int64_t e = 0; e < 2; ++e) {
        const T* src = grad + g.out_offset(r, a, e);
        for (int64_t i = 0; i < g.width; ++i) {
          const T* pair = src + 2 * i * g.block;
#pragma omp simd
          for (int64_t c = 0; c < g.block; ++c)
            sum[i * g.block + c] += to_float(pair[c]) + to_float(pair[g.block + c]);
        }
      }
    if constexpr (!std::is_same_v<T, float>) {
      T* dst = out + r * g.in_row;
      for (int64_t i = 0; i < g.in_row; ++i) dst[i] = from_float<T>(sum[i]);
    }
  });
}

}  // namespace

Tensor Upsample::forward_cpu(const Tensor& x) {
  const RowGeometry g(x.shape(), ndim_, x.channel_block());
  Tensor y = Tensor::empty(output_shape(x.shape()), x.dtype(), x.device(), x.channel_block());
  with_storage_type(x.dtype(), [&](auto storage) {
    using T = decltype(storage);
    upsample_rows(g, x.data<T>(), y.data<T>());
  });
  in_shape_ = x.shape();
  in_block_ = x.channel_block();
  has_forward_ = true;
  return y;
}

Tensor Upsample::backward_cpu(const Tensor& dy_in) {
  // dx comes back in the forward input's layout; dy is taken in that layout too.
  const Tensor dy = to_channel_block(dy_in, in_block_);
  const RowGeometry g(in_shape_, ndim_, in_block_);
  Tensor dx = Tensor::empty(in_shape_, dy.dtype(), dy.device(), in_block_);
  with_storage_type(dy.dtype(), [&](auto storage) {
    using T = decltype(storage);
    sum_rows(g, dy.data<T>(), dx.data<T>());
  });
  return dx;
}

}  // namespace pdegen

// Normalisation arithmetic (batch norm, instance norm) written once for both backends: statistics
// from sums, the normalisation itself and the backward formula, each folded into a few per-channel
// coefficients so that the per-element work is one or two fused multiply-adds. Below them, the CPU's
// lane loops that run this arithmetic over one contiguous run of a plain or channel-blocked tensor.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "core/blocked_layout.hpp"
#include "core/error.hpp"
#include "core/hd.hpp"
#include "core/tensor.hpp"
#if defined(__CUDACC__)
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_context.hpp"
#else
#include "backend/cpu/dnnl_context.hpp"
#include "backend/cpu/parallel.hpp"
#endif

namespace pdegen {

// Biased variance (what normalisation divides by) from sum x, sum x^2 and the count. The sums are
// double: in fp32 a channel of a 256^2 x 4 batch would lose about four digits, and E[x^2] - E[x]^2
// cancels whatever is left when the mean is large against the spread.
PDEGEN_HD double norm_biased_var(double sum, double sum_sq, double count) {
  const double mean = sum / count;
  const double var = sum_sq / count - mean * mean;
  return var > 0 ? var : 0;  // a constant channel can come out at -1 ulp
}

PDEGEN_HD double norm_inv_std(double var, double eps) { return 1.0 / sqrt(var + eps); }

// y = gamma * xhat + beta with xhat = (x - mean) * inv_std, and scale = gamma * inv_std folded per
// channel. Subtracting the mean first (rather than y = x * scale + shift) keeps the result accurate
// when |mean| is large against the spread.
PDEGEN_HD float norm_forward(float x, float mean, float scale, float beta) {
  return (x - mean) * scale + beta;
}

// dL/dx of y = gamma * xhat + beta. With batch statistics (M elements per channel, sums over all of
// them, on every rank):
//   dx = gamma * inv_std * (dy - sum(dy) / M - xhat * sum(dy * xhat) / M)
// folded into dx = a * dy + b * (x - mean) + c. With fixed statistics (running stats in eval mode)
// mean and inv_std are constants, so b = c = 0.
struct NormBackwardCoeffs {
  double a, b, c;
};

PDEGEN_HD NormBackwardCoeffs norm_backward_coeffs(double gamma, double inv_std, double sum_dy,
                                                  double sum_dy_xhat, double count, bool batch_statistics) {
  const double a = gamma * inv_std;
  if (!batch_statistics) return {a, 0.0, 0.0};
  return {a, -a * inv_std * sum_dy_xhat / count, -a * sum_dy / count};
}

PDEGEN_HD float norm_backward(float dy, float x, float mean, float a, float b, float c) {
  return a * dy + b * (x - mean) + c;
}

#if !defined(__CUDACC__)
// The CPU's loops. A tensor of N, C, S in channel blocks of B is N * C/B contiguous "rows" of S * B
// floats, lane l of row (n, cb) holding channel cb * B + l; B = 1 is the plain layout. Each loop
// covers `count` spatial positions of one row with the B lanes innermost, so it vectorises over
// channels (B = 16: one AVX-512 register of fp32) or, plain, over space. Coefficient pointers point
// at the row's first lane.
namespace norm_cpu {

// Work items of the OpenMP loops: rows cut into chunks of at most `chunk` spatial positions (64 KiB
// of input), so that a batch-1 field with 16 channels still spreads over every thread. Each item
// keeps its own partial sums, added afterwards in item order: the sums do not depend on the thread
// count.
struct Tiling {
  int64_t rows = 0, spatial = 0, block = 1, chunk = 1, chunks = 0;
  Tiling(int64_t n_rows, int64_t n_spatial, int64_t channel_block)
      : rows(n_rows), spatial(n_spatial), block(channel_block) {
    chunk = std::max<int64_t>(1, 16384 / block);
    chunks = (spatial + chunk - 1) / chunk;
  }
  int64_t items() const { return rows * chunks; }
  int64_t row(int64_t item) const { return item / chunks; }
  int64_t first(int64_t item) const { return item % chunks * chunk; }
  int64_t count(int64_t item) const { return std::min(chunk, spatial - first(item)); }
  int64_t offset(int64_t item) const { return (row(item) * spatial + first(item)) * block; }
};

// The CPU norms compute on fp32 in the fp32 layouts: a bf16 activation (channels-last) is widened
// on the way in (cpu::widened_to_fp32) and the result rounded back into the caller's type and layout
// on the way out. Two conversion passes, but the norms' own passes stay as fast as in fp32.
inline Tensor narrowed_like(const Tensor& t, const Tensor& like) {
  return like.dtype() == DType::f32 ? t : cpu::narrowed_to(t, like.dtype(), like.channel_block());
}

// The work items of an N, C, [D,] H, W tensor in its own layout.
inline Tiling tiling_of(const Tensor& t) {
  const int64_t b = t.channel_block();
  return Tiling(t.dim(0) * (t.dim(1) / b), t.shape().spatial(), b);
}

// Calls f(std::integral_constant<int, B>) for the tensor's channel block, so the lane loops get B
// as a compile-time constant.
template <class F>
void with_lanes(int block, F&& f) {
  switch (block) {
    case 1:
      return f(std::integral_constant<int, 1>{});
    case 8:
      return f(std::integral_constant<int, 8>{});
    case 16:
      return f(std::integral_constant<int, 16>{});
    default:
      PDEGEN_THROW("normalisation supports channel blocks 1, 8 and 16, got {}", block);
  }
}

// Adds terms(j, l) = (first, second) over `rows` rows of W lanes (element j = row * W + l) into
// first[l], second[l]. Four rows go to four independent sets of accumulators: with one set, every
// vector add waits for the previous one and the loop runs at the add latency instead of the memory
// speed.
template <int W, class Terms>
void accumulate_rows(int64_t rows, Terms&& terms, double* first, double* second) {
  double f0[W] = {}, f1[W] = {}, f2[W] = {}, f3[W] = {}, s0[W] = {}, s1[W] = {}, s2[W] = {}, s3[W] = {};
  const int64_t end = rows * W;
  int64_t j = 0;
  for (; j + 4 * W <= end; j += 4 * W) {
#pragma omp simd
    for (int l = 0; l < W; ++l) {
      double a, b;
      terms(j + l, l, a, b);
      f0[l] += a;
      s0[l] += b;
      terms(j + W + l, l, a, b);
      f1[l] += a;
      s1[l] += b;
      terms(j + 2 * W + l, l, a, b);
      f2[l] += a;
      s2[l] += b;
      terms(j + 3 * W + l, l, a, b);
      f3[l] += a;
      s3[l] += b;
    }
  }
  for (; j < end; j += W) {
#pragma omp simd
    for (int l = 0; l < W; ++l) {
      double a, b;
      terms(j + l, l, a, b);
      f0[l] += a;
      s0[l] += b;
    }
  }
  for (int l = 0; l < W; ++l) {
    first[l] += (f0[l] + f1[l]) + (f2[l] + f3[l]);
    second[l] += (s0[l] + s1[l]) + (s2[l] + s3[l]);
  }
}

// Per-lane sums of terms(j, lane) = (first, second) over `count` positions. Plain rows (B = 1) are
// summed as rows of 16 consecutive positions, folded at the end, so they vectorise the same way.
template <int B, class Terms>
void lane_accumulate(int64_t count, Terms&& terms, double* first, double* second) {
  if constexpr (B == 1) {
    constexpr int W = 16;
    double f[W] = {}, s[W] = {};
    const int64_t rows = count / W;
    accumulate_rows<W>(
        rows, [&](int64_t j, int, double& a, double& b) { terms(j, 0, a, b); }, f, s);
    for (int64_t j = rows * W; j < count; ++j) {
      double a, b;
      terms(j, 0, a, b);
      first[0] += a;
      second[0] += b;
    }
    for (int l = 0; l < W; ++l) {
      first[0] += f[l];
      second[0] += s[l];
    }
  } else {
    accumulate_rows<B>(count, terms, first, second);
  }
}

// Adds sum x and sum x^2 of each lane to sum[l], sum_sq[l]. (x^2 of an fp32 value is exact in double.)
template <int B>
void lane_sums(const float* x, int64_t count, double* sum, double* sum_sq) {
  lane_accumulate<B>(
      count,
      [x](int64_t j, int, double& a, double& b) {
        a = x[j];
        b = a * a;
      },
      sum, sum_sq);
}

// Adds sum dy and sum dy * (x - mean) of each lane (the latter is sum dy * xhat / inv_std).
template <int B>
void lane_grad_sums(const float* x, const float* dy, int64_t count, const float* mean, double* sum_dy,
                    double* sum_dy_xc) {
  lane_accumulate<B>(
      count,
      [x, dy, mean](int64_t j, int l, double& a, double& b) {
        a = dy[j];
        b = a * static_cast<double>(x[j] - mean[l]);
      },
      sum_dy, sum_dy_xc);
}

template <int B>
void lane_forward(const float* __restrict x, float* __restrict y, int64_t count, const float* mean,
                  const float* scale, const float* beta) {
  if constexpr (B == 1) {
    const float m = mean[0], k = scale[0], b = beta[0];
#pragma omp simd
    for (int64_t i = 0; i < count; ++i) y[i] = norm_forward(x[i], m, k, b);
  } else {
    for (int64_t j = 0; j < count * B; j += B)
#pragma omp simd
      for (int l = 0; l < B; ++l) y[j + l] = norm_forward(x[j + l], mean[l], scale[l], beta[l]);
  }
}

template <int B>
void lane_backward(const float* __restrict x, const float* __restrict dy, float* __restrict dx, int64_t count,
                   const float* mean, const float* a, const float* b, const float* c) {
  if constexpr (B == 1) {
    const float m = mean[0], ka = a[0], kb = b[0], kc = c[0];
#pragma omp simd
    for (int64_t i = 0; i < count; ++i) dx[i] = norm_backward(dy[i], x[i], m, ka, kb, kc);
  } else {
    for (int64_t j = 0; j < count * B; j += B)
#pragma omp simd
      for (int l = 0; l < B; ++l) dx[j + l] = norm_backward(dy[j + l], x[j + l], mean[l], a[l], b[l], c[l]);
  }
}

// Totals of two per-lane sums: `item_sums(item, first, second)` adds one work item's lanes into
// first[0, B) and second[0, B) of a scratch row per item (items in parallel); the rows are then added
// in item order into first[slot(row) + l] and second[slot(row) + l], so the totals do not depend on
// the thread count. slot(row) is where the statistics of the row's lane 0 sit: its channel for batch
// norm, its (sample, channel) for instance norm.
template <class Slot, class F>
void lane_totals(const Tiling& t, Slot&& slot, F&& item_sums, double* first, double* second) {
  const int64_t B = t.block;
  std::vector<double> part(static_cast<size_t>(t.items() * 2 * B), 0.0);
  cpu::parallel_for(t.items(), [&](int64_t i) {
    double* p = part.data() + i * 2 * B;
    item_sums(i, p, p + B);
  });
  for (int64_t i = 0; i < t.items(); ++i) {
    const int64_t k0 = slot(t.row(i));
    const double* p = part.data() + i * 2 * B;
    for (int64_t l = 0; l < B; ++l) {
      first[k0 + l] += p[l];
      second[k0 + l] += p[B + l];
    }
  }
}

// Whole-tensor passes: the lane loops over every work item of `t`, in parallel, with the statistics
// and coefficients of row r's lane l at index slot(r) + l (see lane_totals).

// sum[k] += sum of x, sum_sq[k] += sum of x^2 over the elements of statistic k.
template <class Slot>
void sums_pass(const Tiling& t, Slot&& slot, const float* x, double* sum, double* sum_sq) {
  with_lanes(static_cast<int>(t.block), [&](auto lanes) {
    constexpr int L = decltype(lanes)::value;
    lane_totals(
        t, slot, [&](int64_t i, double* s, double* q) { lane_sums<L>(x + t.offset(i), t.count(i), s, q); },
        sum, sum_sq);
  });
}

// sum_dy[k] += sum of dy, sum_dy_xc[k] += sum of dy * (x - mean[k]).
template <class Slot>
void grad_sums_pass(const Tiling& t, Slot&& slot, const float* x, const float* dy, const float* mean,
                    double* sum_dy, double* sum_dy_xc) {
  with_lanes(static_cast<int>(t.block), [&](auto lanes) {
    constexpr int L = decltype(lanes)::value;
    lane_totals(
        t, slot,
        [&](int64_t i, double* s, double* q) {
          lane_grad_sums<L>(x + t.offset(i), dy + t.offset(i), t.count(i), mean + slot(t.row(i)), s, q);
        },
        sum_dy, sum_dy_xc);
  });
}

// y = norm_forward(x, mean[k], scale[k], shift[k]).
template <class Slot>
void forward_pass(const Tiling& t, Slot&& slot, const float* x, float* y, const float* mean,
                  const float* scale, const float* shift) {
  with_lanes(static_cast<int>(t.block), [&](auto lanes) {
    constexpr int L = decltype(lanes)::value;
    cpu::parallel_for(t.items(), [&](int64_t i) {
      const int64_t k0 = slot(t.row(i));
      lane_forward<L>(x + t.offset(i), y + t.offset(i), t.count(i), mean + k0, scale + k0, shift + k0);
    });
  });
}

// dx = norm_backward(dy, x, mean[k], a[k], b[k], c[k]).
template <class Slot>
void backward_pass(const Tiling& t, Slot&& slot, const float* x, const float* dy, float* dx,
                   const float* mean, const float* a, const float* b, const float* c) {
  with_lanes(static_cast<int>(t.block), [&](auto lanes) {
    constexpr int L = decltype(lanes)::value;
    cpu::parallel_for(t.items(), [&](int64_t i) {
      const int64_t k0 = slot(t.row(i));
      lane_backward<L>(x + t.offset(i), dy + t.offset(i), dx + t.offset(i), t.count(i), mean + k0, a + k0,
                       b + k0, c + k0);
    });
  });
}

}  // namespace norm_cpu
#endif

#if defined(__CUDACC__)
// The GPU's kernels for the same arithmetic, over the same "rows" as the CPU's loops: row r =
// n * C/B + cb holds S * B contiguous elements, lane l of position s at s * B + l being channel
// cb * B + l (B = 1: plain). Kernels walk rows, so an element's channel is its row's plus its lane
// (B is a power of two: a mask, no division per element), and x and dy may differ in layout.
// Statistics are indexed by `slot`: the channel for batch norm, n * C + c for instance norm
// (per_instance). Sums are reduced in double like the CPU's, in a fixed order: the positions of a
// statistic are cut into `parts` strided parts, each part reduced by one block in shared memory, and
// the parts then added in order by one thread, so the result is the same run to run, no atomics.
// Activations (x, y, dy, dx) are templates on their storage type T (fp32, fp16 or bf16): loaded with
// to_float, stored with from_float<T>, so the arithmetic is fp32 (sums double) whatever T is, and
// the fp32 instances are the plain float code. Statistics and coefficients are always fp32.
namespace norm_cuda {

inline constexpr int threads = 256;

struct Layout {
  int64_t N = 0, C = 0, S = 0, b = 1;
  // First element of (n, c)'s positions; position s is at first + s * b.
  __host__ __device__ int64_t first(int64_t n, int64_t c) const {
    return blocked_offset<int64_t>(n, c, 0, C, S, b);
  }
  __host__ __device__ int64_t rows() const { return N * (C / b); }
  __host__ __device__ int64_t row_length() const { return S * b; }
};

inline Layout layout_of(const Tensor& t) {
  const int64_t b = t.channel_block();
  PDEGEN_CHECK(b > 0 && (b & (b - 1)) == 0, "GPU normalisation needs a power-of-two channel block, got {}",
               b);
  return Layout{t.dim(0), t.dim(1), t.shape().spatial(), b};
}

// Which statistic an element belongs to: its channel, or its (sample, channel).
struct Slots {
  bool per_instance;
  int64_t N, C;
  __host__ __device__ int64_t count() const { return per_instance ? N * C : C; }
  __device__ int64_t slot(int64_t n, int64_t c) const { return per_instance ? n * C + c : c; }
  // Statistic k's channel and its samples [n0, n1).
  __device__ void samples(int64_t k, int64_t& c, int64_t& n0, int64_t& n1) const {
    c = per_instance ? k % C : k;
    n0 = per_instance ? k / C : 0;
    n1 = per_instance ? n0 + 1 : N;
  }
};

// The terms of the forward sums at x[ox]: x and x^2 (exact in double).
template <class T>
struct ValueTerms {
  const T* x;
  Layout lx;
  __device__ void operator()(int64_t ox, int64_t, int64_t, double& a, double& q) const {
    a = to_float(x[ox]);
    q = a * a;
  }
  __device__ int64_t dy_first(int64_t, int64_t) const { return 0; }  // no dy
  __device__ int64_t dy_stride() const { return 0; }
};

// The terms of the backward sums at x[ox], dy[ody]: dy and dy * (x - mean), the subtraction in fp32
// as on the CPU.
template <class T>
struct GradTerms {
  const T *x, *dy;
  const float* mean;
  Layout lx, ldy;
  __device__ void operator()(int64_t ox, int64_t ody, int64_t k, double& a, double& q) const {
    a = to_float(dy[ody]);
    q = a * static_cast<double>(to_float(x[ox]) - mean[k]);
  }
  __device__ int64_t dy_first(int64_t n, int64_t c) const { return ldy.first(n, c); }
  __device__ int64_t dy_stride() const { return ldy.b; }
};

// partial[(k * parts + p) * 2 + {0, 1}] = the sums of part p of statistic k (grid: statistics along
// x, any number; parts along y, at most 1024): positions s = p * threads + t + m * parts * threads of
// every sample of the statistic.
template <class Terms>
__global__ void part_sums_kernel(Slots slots, Terms terms, int64_t parts, double* partial) {
  __shared__ double first[threads], second[threads];
  const int64_t k = blockIdx.x, p = blockIdx.y, S = terms.lx.S;
  int64_t c, n0, n1;
  slots.samples(k, c, n0, n1);
  double a_sum = 0, q_sum = 0;
  for (int64_t n = n0; n < n1; ++n) {
    const int64_t bx = terms.lx.first(n, c), by = terms.dy_first(n, c);
    for (int64_t s = p * threads + threadIdx.x; s < S; s += parts * threads) {
      double a, q;
      terms(bx + s * terms.lx.b, by + s * terms.dy_stride(), k, a, q);
      a_sum += a;
      q_sum += q;
    }
  }
  first[threadIdx.x] = a_sum;
  second[threadIdx.x] = q_sum;
  __syncthreads();
  for (int width = threads / 2; width > 0; width /= 2) {
    if (static_cast<int>(threadIdx.x) < width) {
      first[threadIdx.x] += first[threadIdx.x + width];
      second[threadIdx.x] += second[threadIdx.x + width];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    partial[(k * parts + p) * 2] = first[0];
    partial[(k * parts + p) * 2 + 1] = second[0];
  }
}

// totals[k] = sums of statistic k's parts in order, first then second: [first_0.., second_0..]. (The
// kernels of this header are templates, also where one instance is used: nvcc has no inline
// __global__ functions, and a template is what several .cu files may each instantiate.)
template <class Real>
__global__ void part_totals_kernel(const Real* partial, int64_t parts, int64_t count, Real* totals) {
  const int64_t k = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (k >= count) return;
  double a = 0, q = 0;
  for (int64_t p = 0; p < parts; ++p) {
    a += partial[(k * parts + p) * 2];
    q += partial[(k * parts + p) * 2 + 1];
  }
  totals[k] = a;
  totals[count + k] = q;
}

// Host: the two sums of every statistic, copied into first[k] and second[k] (this waits for the GPU).
// The part count depends on the shape only, so the order of the additions does too.
template <class Terms>
void totals(const Slots& slots, const Terms& terms, double* first, double* second) {
  const int64_t count = slots.count(), S = terms.lx.S;
  const int64_t samples = slots.per_instance ? 1 : slots.N;
  // About 8 terms per thread.
  const int64_t parts = std::clamp<int64_t>((samples * S + 8 * threads - 1) / (8 * threads), 1,
                                            std::clamp<int64_t>((S + threads - 1) / threads, 1, 1024));
  Tensor partial = Tensor::empty(Shape{count * parts * 2}, DType::f64, Device::cuda);
  Tensor sums = Tensor::empty(Shape{2 * count}, DType::f64, Device::cuda);
  cudaStream_t stream = cuda::stream();
  part_sums_kernel<<<dim3(static_cast<unsigned>(count), static_cast<unsigned>(parts)), threads, 0, stream>>>(
      slots, terms, parts, partial.data<double>());
  CUDA_CHECK_LAUNCH();
  part_totals_kernel<<<cuda::blocks_for(count), threads, 0, stream>>>(partial.data<double>(), parts, count,
                                                                      sums.data<double>());
  CUDA_CHECK_LAUNCH();
  std::vector<double> host(static_cast<size_t>(2 * count));
  CUDA_CHECK(cudaMemcpyAsync(host.data(), sums.data<double>(), host.size() * sizeof(double),
                             cudaMemcpyDeviceToHost, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  std::copy(host.begin(), host.begin() + count, first);
  std::copy(host.begin() + count, host.end(), second);
}

// Grid of the element-wise kernels: rows along x, chunks of a row along y (a grid-stride loop covers
// the rest of a long row).
inline dim3 row_grid(const Layout& l) {
  const int64_t chunks = std::clamp<int64_t>((l.row_length() + threads - 1) / threads, 1, 65535);
  return dim3(static_cast<unsigned>(std::max<int64_t>(l.rows(), 1)), static_cast<unsigned>(chunks));
}

// y = norm_forward(x, mean[k], scale[k], shift[k]) (y in x's layout and storage type).
template <class T>
__global__ void forward_kernel(Slots slots, Layout l, const T* __restrict__ x, T* __restrict__ y,
                               const float* mean, const float* scale, const float* shift) {
  const int64_t r = blockIdx.x, blocks = l.C / l.b, n = r / blocks, c0 = r % blocks * l.b,
                length = l.row_length();
  const int64_t k0 = slots.slot(n, c0);
  const int64_t lanes = l.b - 1;
  const T* xr = x + r * length;
  T* yr = y + r * length;
  for (int64_t j = blockIdx.y * int64_t{blockDim.x} + threadIdx.x; j < length;
       j += int64_t{gridDim.y} * blockDim.x) {
    const int64_t k = k0 + (j & lanes);
    yr[j] = from_float<T>(norm_forward(to_float(xr[j]), mean[k], scale[k], shift[k]));
  }
}

// dx = norm_backward(dy, x, mean[k], a[k], b[k], c[k]) (dx in x's layout; dy in x's when kSameLayout,
// otherwise indexed through ldy; x, dy and dx of one storage type).
template <bool kSameLayout, class T>
__global__ void backward_kernel(Slots slots, Layout l, Layout ldy, const T* __restrict__ x,
                                const T* __restrict__ dy, T* __restrict__ dx, const float* mean,
                                const float* a, const float* b, const float* c) {
  const int64_t r = blockIdx.x, blocks = l.C / l.b, n = r / blocks, c0 = r % blocks * l.b,
                length = l.row_length();
  const int64_t k0 = slots.slot(n, c0);
  const int64_t lanes = l.b - 1;
  const T* xr = x + r * length;
  T* dxr = dx + r * length;
  for (int64_t j = blockIdx.y * int64_t{blockDim.x} + threadIdx.x; j < length;
       j += int64_t{gridDim.y} * blockDim.x) {
    const int64_t lane = j & lanes, k = k0 + lane;
    float g;
    if constexpr (kSameLayout) {
      g = to_float(dy[r * length + j]);
    } else {
      g = to_float(dy[ldy.first(n, c0 + lane) + (j / l.b) * ldy.b]);
    }
    dxr[j] = from_float<T>(norm_backward(g, to_float(xr[j]), mean[k], a[k], b[k], c[k]));
  }
}

// Launches of the element-wise passes.
template <class T>
void forward_pass(const Slots& slots, const Layout& l, const T* x, T* y, const float* mean,
                  const float* scale, const float* shift) {
  if (l.rows() == 0 || l.row_length() == 0) return;
  forward_kernel<T><<<row_grid(l), threads, 0, cuda::stream()>>>(slots, l, x, y, mean, scale, shift);
  CUDA_CHECK_LAUNCH();
}

template <class T>
void backward_pass(const Slots& slots, const Layout& l, const Layout& ldy, const T* x, const T* dy, T* dx,
                   const float* mean, const float* a, const float* b, const float* c) {
  if (l.rows() == 0 || l.row_length() == 0) return;
  if (ldy.b == l.b)
    backward_kernel<true, T>
        <<<row_grid(l), threads, 0, cuda::stream()>>>(slots, l, ldy, x, dy, dx, mean, a, b, c);
  else
    backward_kernel<false, T>
        <<<row_grid(l), threads, 0, cuda::stream()>>>(slots, l, ldy, x, dy, dx, mean, a, b, c);
  CUDA_CHECK_LAUNCH();
}

// The sums of the forward statistics of x (ValueTerms) in x's storage type: see totals().
inline void value_totals(const Slots& slots, const Layout& l, const Tensor& x, double* sum, double* sum_sq) {
  with_storage_type(x.dtype(), [&](auto storage) {
    using T = decltype(storage);
    totals(slots, ValueTerms<T>{x.data<T>(), l}, sum, sum_sq);
  });
}

// The sums of the backward (GradTerms: sum dy, sum dy * (x - mean)) of x and dy (one storage type).
inline void grad_totals(const Slots& slots, const Layout& l, const Layout& ldy, const Tensor& x,
                        const Tensor& dy, const Tensor& mean, double* sum_dy, double* sum_dy_xc) {
  with_storage_type(x.dtype(), [&](auto storage) {
    using T = decltype(storage);
    totals(slots, GradTerms<T>{x.data<T>(), dy.data<T>(), mean.data<float>(), l, ldy}, sum_dy, sum_dy_xc);
  });
}

// A host vector on the device (the copy is queued on the compute stream; pageable host memory is
// staged before the call returns, so `v` may go away).
template <class T>
Tensor upload(const std::vector<T>& v) {
  Tensor t = Tensor::empty(Shape{static_cast<int64_t>(v.size())}, dtype_of<T>(), Device::cuda);
  if (!v.empty())
    CUDA_CHECK(
        cudaMemcpyAsync(t.raw(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice, cuda::stream()));
  return t;
}

// A small fp32 tensor's values on the host, from either device (waits for the GPU).
inline std::vector<float> host_values(const Tensor& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  if (t.device() == Device::cpu) {
    std::copy(t.data<float>(), t.data<float>() + t.numel(), v.begin());
  } else if (!v.empty()) {
    CUDA_CHECK(cudaMemcpyAsync(v.data(), t.data<float>(), v.size() * sizeof(float), cudaMemcpyDeviceToHost,
                               cuda::stream()));
    CUDA_CHECK(cudaStreamSynchronize(cuda::stream()));
  }
  return v;
}

// y = (x - mean) * scale + shift with per-slot coefficients computed on the host: the forward of
// both batch norm (slots = channels) and instance norm (slots = sample x channel). y has x's layout
// and storage type.
inline Tensor normalize(const Slots& slots, const Layout& l, const Tensor& x, const std::vector<float>& mean,
                        const std::vector<float>& scale, const std::vector<float>& shift) {
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device(), x.channel_block());
  const Tensor d_mean = upload(mean), d_scale = upload(scale), d_shift = upload(shift);
  with_storage_type(x.dtype(), [&](auto storage) {
    using T = decltype(storage);
    forward_pass<T>(slots, l, x.data<T>(), y.data<T>(), d_mean.data<float>(), d_scale.data<float>(),
                    d_shift.data<float>());
  });
  return y;
}

// dx = a * dy + b * (x - mean) + c with per-slot coefficients on the device: the backward of both
// norms. dx has x's layout and storage type (dy's: the layers check that they agree); dy may be in
// another layout.
inline Tensor normalize_backward(const Slots& slots, const Layout& l, const Layout& ldy, const Tensor& x,
                                 const Tensor& dy, const Tensor& mean, const Tensor& a, const Tensor& b,
                                 const Tensor& c) {
  Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device(), x.channel_block());
  with_storage_type(x.dtype(), [&](auto storage) {
    using T = decltype(storage);
    backward_pass<T>(slots, l, ldy, x.data<T>(), dy.data<T>(), dx.data<T>(), mean.data<float>(),
                     a.data<float>(), b.data<float>(), c.data<float>());
  });
  return dx;
}

// grad[c] += delta[c] for a parameter gradient on the GPU.
template <class Real>
__global__ void add_kernel(Real* grad, const Real* delta, int64_t n) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i < n) grad[i] += delta[i];
}

// grad += delta for a parameter gradient on either device.
inline void accumulate(const Tensor& grad, const std::vector<float>& delta) {
  float* g = grad.data<float>();
  if (grad.device() == Device::cpu) {
    for (size_t i = 0; i < delta.size(); ++i) g[i] += delta[i];
    return;
  }
  const Tensor d = upload(delta);
  const auto n = static_cast<int64_t>(delta.size());
  add_kernel<<<cuda::blocks_for(n), threads, 0, cuda::stream()>>>(g, d.data<float>(), n);
  CUDA_CHECK_LAUNCH();
}

}  // namespace norm_cuda
#endif

}  // namespace pdegen

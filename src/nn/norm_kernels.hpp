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

#include "core/error.hpp"
#include "core/hd.hpp"
#include "core/tensor.hpp"
#if defined(__CUDACC__)
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_context.hpp"
#else
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
// The GPU's kernels for the same arithmetic. Each thread maps a storage index to its logical
// (n, c, s) through the tensor's channel block (core/tensor.hpp), so one kernel serves plain and
// blocked tensors, and x and dy may differ in layout. Statistics are indexed by `slot`: the channel
// for batch norm, n * C + c for instance norm (per_instance). Sums are reduced in double like the
// CPU's, in a fixed order: each segment (a statistic's elements) is cut into `parts` strided parts,
// each part reduced by one block in shared memory, and the parts then added in order by one thread,
// so the result is the same run to run and needs no atomics.
namespace norm_cuda {

struct Layout {
  int64_t N = 0, C = 0, S = 0, b = 1;
  __host__ __device__ int64_t offset(int64_t n, int64_t c, int64_t s) const {
    return ((n * (C / b) + c / b) * S + s) * b + c % b;
  }
  // Logical (n, c, s) of storage index i.
  __device__ void logical(int64_t i, int64_t& n, int64_t& c, int64_t& s) const {
    const int64_t lane = i % b, q = i / b, r = q / S;
    s = q % S;
    c = r % (C / b) * b + lane;
    n = r / (C / b);
  }
};

inline Layout layout_of(const Tensor& t) {
  return Layout{t.dim(0), t.dim(1), t.shape().spatial(), t.channel_block()};
}

// Which statistic an element belongs to, and the elements of statistic k.
struct Slots {
  bool per_instance;
  int64_t C, S, N;
  __host__ __device__ int64_t segments() const { return per_instance ? N * C : C; }
  __host__ __device__ int64_t length() const { return per_instance ? S : N * S; }
  __device__ int64_t slot(int64_t n, int64_t c) const { return per_instance ? n * C + c : c; }
  // Element j of statistic k as (n, c, s).
  __device__ void element(int64_t k, int64_t j, int64_t& n, int64_t& c, int64_t& s) const {
    if (per_instance) {
      n = k / C;
      c = k % C;
      s = j;
    } else {
      c = k;
      n = j / S;
      s = j % S;
    }
  }
};

inline constexpr int threads = 256;

// The terms of the forward sums: x and x^2 (exact in double).
struct ValueTerms {
  const float* x;
  Layout lx;
  __device__ void operator()(int64_t n, int64_t c, int64_t s, int64_t, double& a, double& q) const {
    a = x[lx.offset(n, c, s)];
    q = a * a;
  }
};

// The terms of the backward sums: dy and dy * (x - mean), the subtraction in fp32 as on the CPU.
struct GradTerms {
  const float *x, *dy, *mean;
  Layout lx, ldy;
  __device__ void operator()(int64_t n, int64_t c, int64_t s, int64_t k, double& a, double& q) const {
    a = dy[ldy.offset(n, c, s)];
    q = a * static_cast<double>(x[lx.offset(n, c, s)] - mean[k]);
  }
};

// partial[(k * parts + p) * 2 + {0, 1}] = the sums of part p of statistic k (grid: parts x segments).
template <class Terms>
__global__ void part_sums_kernel(Slots slots, Terms terms, int64_t parts, double* partial) {
  __shared__ double first[threads], second[threads];
  const int64_t k = blockIdx.y, p = blockIdx.x, length = slots.length();
  double a_sum = 0, q_sum = 0;
  for (int64_t j = p * threads + threadIdx.x; j < length; j += parts * threads) {
    int64_t n, c, s;
    slots.element(k, j, n, c, s);
    double a, q;
    terms(n, c, s, k, a, q);
    a_sum += a;
    q_sum += q;
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

// The non-template kernels have internal linkage: nvcc has no inline __global__ functions, and each
// .cu file that includes this header gets its own copy.
namespace {

// totals[k] = sums of statistic k's parts in order, first then second: [first_0.., second_0..].
__global__ void part_totals_kernel(const double* partial, int64_t parts, int64_t segments,
                                          double* totals) {
  const int64_t k = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (k >= segments) return;
  double a = 0, q = 0;
  for (int64_t p = 0; p < parts; ++p) {
    a += partial[(k * parts + p) * 2];
    q += partial[(k * parts + p) * 2 + 1];
  }
  totals[k] = a;
  totals[segments + k] = q;
}

}  // namespace

// Host: the two sums of every statistic, copied into first[k] and second[k] (this waits for the GPU).
// The part count depends on the shape only, so the order of the additions does too.
template <class Terms>
void totals(const Slots& slots, const Terms& terms, double* first, double* second) {
  const int64_t segments = slots.segments(), length = slots.length();
  const int64_t parts = std::clamp<int64_t>((length + 8 * threads - 1) / (8 * threads), 1, 1024);
  PDEGEN_CHECK(segments <= 65535, "GPU normalisation supports at most 65535 statistics, got {}", segments);
  Tensor partial = Tensor::empty(Shape{segments * parts * 2}, DType::f64, Device::cuda);
  Tensor sums = Tensor::empty(Shape{2 * segments}, DType::f64, Device::cuda);
  cudaStream_t stream = cuda::stream();
  part_sums_kernel<<<dim3(static_cast<unsigned>(parts), static_cast<unsigned>(segments)), threads, 0, stream>>>(
      slots, terms, parts, partial.data<double>());
  CUDA_CHECK_LAUNCH();
  part_totals_kernel<<<cuda::blocks_for(segments), threads, 0, stream>>>(partial.data<double>(), parts, segments,
                                                                       sums.data<double>());
  CUDA_CHECK_LAUNCH();
  std::vector<double> host(static_cast<size_t>(2 * segments));
  CUDA_CHECK(cudaMemcpyAsync(host.data(), sums.data<double>(), host.size() * sizeof(double),
                             cudaMemcpyDeviceToHost, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  std::copy(host.begin(), host.begin() + segments, first);
  std::copy(host.begin() + segments, host.end(), second);
}

namespace {

// y = norm_forward(x, mean[k], scale[k], shift[k]) over y's storage (y in x's layout).
__global__ void forward_kernel(Slots slots, Layout l, const float* __restrict__ x, float* __restrict__ y,
                                      const float* mean, const float* scale, const float* shift) {
  const int64_t total = l.N * l.C * l.S;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
    int64_t n, c, s;
    l.logical(i, n, c, s);
    const int64_t k = slots.slot(n, c);
    y[i] = norm_forward(x[i], mean[k], scale[k], shift[k]);
  }
}

// dx = norm_backward(dy, x, mean[k], a[k], b[k], c[k]) over dx's storage (dx in x's layout).
__global__ void backward_kernel(Slots slots, Layout l, Layout ldy, const float* __restrict__ x,
                                       const float* __restrict__ dy, float* __restrict__ dx, const float* mean,
                                       const float* a, const float* b, const float* c) {
  const int64_t total = l.N * l.C * l.S;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
    int64_t n, ch, s;
    l.logical(i, n, ch, s);
    const int64_t k = slots.slot(n, ch);
    dx[i] = norm_backward(dy[ldy.offset(n, ch, s)], x[i], mean[k], a[k], b[k], c[k]);
  }
}

}  // namespace

inline unsigned grid_for(int64_t n) { return std::min(cuda::blocks_for(n), 65535u); }

// A host vector on the device (the copy is queued on the compute stream; pageable host memory is
// staged before the call returns, so `v` may go away).
template <class T>
Tensor upload(const std::vector<T>& v) {
  Tensor t = Tensor::empty(Shape{static_cast<int64_t>(v.size())}, dtype_of<T>(), Device::cuda);
  if (!v.empty())
    CUDA_CHECK(cudaMemcpyAsync(t.raw(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice, cuda::stream()));
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

namespace {
// grad[c] += delta[c] for a parameter gradient on either device.
__global__ void add_kernel(float* grad, const float* delta, int64_t n) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i < n) grad[i] += delta[i];
}
}  // namespace

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

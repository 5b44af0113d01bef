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
#if !defined(__CUDACC__)
#include "backend/cpu/parallel.hpp"
#include "core/tensor.hpp"
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

}  // namespace pdegen

// Element-type conversion of device memory (to_dtype on the GPU): one grid-stride cast kernel per
// pair of types, rounding exactly as the host conversion in core/tensor.cpp does: every value goes
// through double, and is stored through fp32 unless the target is fp64 (fp64 -> fp16 rounds to fp32
// first, as on the host; fp32 -> fp16/bf16 rounds to nearest even with core/dtype.hpp's functions).
#include <algorithm>
#include <type_traits>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_context.hpp"
#include "core/device_allocator.hpp"

namespace pdegen::cuda {

namespace {

template <class T>
__device__ double load_as_double(T v) {
  if constexpr (std::is_same_v<T, double>)
    return v;
  else
    return static_cast<double>(to_float(v));
}

template <class T>
__device__ T store_from_double(double v) {
  if constexpr (std::is_same_v<T, double>)
    return v;
  else
    return from_float<T>(static_cast<float>(v));  // round to nearest even, as the host's cast
}

template <class From, class To>
__global__ void convert_kernel(const From* __restrict__ src, To* __restrict__ dst, int64_t count) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count;
       i += int64_t{gridDim.x} * blockDim.x)
    dst[i] = store_from_double<To>(load_as_double(src[i]));
}

// Calls f(T{}) with the element type of `t` (any of the four).
template <class F>
void with_element_type(DType t, F&& f) {
  switch (t) {
    case DType::f32:
      return f(float{});
    case DType::f64:
      return f(double{});
    case DType::f16:
      return f(half_t{});
    case DType::bf16:
      return f(bfloat16_t{});
  }
  PDEGEN_THROW("unknown element type {}", static_cast<int>(t));
}

}  // namespace

void convert_elements(void* dst, DType to, const void* src, DType from, int64_t count) {
  if (count == 0) return;
  PDEGEN_CHECK(to != from, "device conversion from {} to itself", dtype_name(from));
  const unsigned grid = std::min(blocks_for(count), 65535u);
  with_element_type(from, [&](auto from_tag) {
    using From = decltype(from_tag);
    with_element_type(to, [&](auto to_tag) {
      using To = decltype(to_tag);
      convert_kernel<From, To>
          <<<grid, 256, 0, stream()>>>(static_cast<const From*>(src), static_cast<To*>(dst), count);
    });
  });
  CUDA_CHECK_LAUNCH();
}

}  // namespace pdegen::cuda

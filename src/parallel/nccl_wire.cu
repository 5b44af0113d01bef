// The NcclReducer's 16-bit wire kernels (see nccl_wire.hpp): grid-stride loops, one element per
// thread per pass, templated on the wire format so the conversion is chosen at compile time.
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_context.hpp"
#include "core/dtype.hpp"
#include "parallel/nccl_wire.hpp"

namespace pdegen::nccl_wire {

namespace {

constexpr unsigned threads = 256;

template <bool BF16>
__device__ __forceinline__ uint16_t to_wire(float v) {
  if constexpr (BF16)
    return to_bf16(v).bits;
  else
    return to_f16(v).bits;
}

template <bool BF16>
__device__ __forceinline__ float from_wire(uint16_t bits) {
  if constexpr (BF16)
    return from_bf16(bfloat16_t{bits});
  else
    return from_f16(half_t{bits});
}

__device__ __forceinline__ int64_t first_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

template <bool BF16>
__global__ void encode_kernel(const float* data, int64_t n, uint16_t* wire, int64_t padded) {
  for (int64_t i = first_index(); i < padded; i += grid_stride())
    wire[i] = i < n ? to_wire<BF16>(data[i]) : uint16_t{0};
}

template <bool BF16>
__global__ void sum_kernel(const uint16_t* received, int ranks, int64_t shard, uint16_t* out) {
  for (int64_t i = first_index(); i < shard; i += grid_stride()) {
    float s = 0;
    for (int r = 0; r < ranks; ++r) s += from_wire<BF16>(received[static_cast<int64_t>(r) * shard + i]);
    out[i] = to_wire<BF16>(s);
  }
}

template <bool BF16>
__global__ void decode_kernel(const uint16_t* wire, int64_t n, float* data) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) data[i] = from_wire<BF16>(wire[i]);
}

}  // namespace

void encode(const float* data, int64_t n, uint16_t* wire, int64_t padded, bool bf16, cudaStream_t stream) {
  if (padded == 0) return;
  if (bf16)
    encode_kernel<true><<<cuda::blocks_for(padded, threads), threads, 0, stream>>>(data, n, wire, padded);
  else
    encode_kernel<false><<<cuda::blocks_for(padded, threads), threads, 0, stream>>>(data, n, wire, padded);
  CUDA_CHECK_LAUNCH();
}

void sum_shards(const uint16_t* received, int ranks, int64_t shard, uint16_t* out, bool bf16,
                cudaStream_t stream) {
  if (shard == 0) return;
  if (bf16)
    sum_kernel<true><<<cuda::blocks_for(shard, threads), threads, 0, stream>>>(received, ranks, shard, out);
  else
    sum_kernel<false><<<cuda::blocks_for(shard, threads), threads, 0, stream>>>(received, ranks, shard, out);
  CUDA_CHECK_LAUNCH();
}

void decode(const uint16_t* wire, int64_t n, float* data, bool bf16, cudaStream_t stream) {
  if (n == 0) return;
  if (bf16)
    decode_kernel<true><<<cuda::blocks_for(n, threads), threads, 0, stream>>>(wire, n, data);
  else
    decode_kernel<false><<<cuda::blocks_for(n, threads), threads, 0, stream>>>(wire, n, data);
  CUDA_CHECK_LAUNCH();
}

}  // namespace pdegen::nccl_wire

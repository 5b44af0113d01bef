// Fills device memory with one element's bit pattern (Tensor::fill on the GPU): one kernel per element
// width, so fp32/fp64/fp16/bf16 values are converted once on the host.
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_context.hpp"
#include "core/device_allocator.hpp"

namespace pdegen::cuda {

namespace {
template <class Bits>
__global__ void fill_kernel(Bits* dst, int64_t count, Bits bits) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) dst[i] = bits;
}

template <class Bits>
void launch_fill(void* dst, int64_t count, uint64_t bits) {
  fill_kernel<Bits>
      <<<blocks_for(count), 256, 0, stream()>>>(static_cast<Bits*>(dst), count, static_cast<Bits>(bits));
  CUDA_CHECK_LAUNCH();
}
}  // namespace

void fill_bits(void* dst, int64_t count, size_t element_bytes, uint64_t bits) {
  if (count == 0) return;
  if (bits == 0) {
    CUDA_CHECK(cudaMemsetAsync(dst, 0, static_cast<size_t>(count) * element_bytes, stream()));
    return;
  }
  switch (element_bytes) {
    case 2:
      launch_fill<uint16_t>(dst, count, bits);
      break;
    case 4:
      launch_fill<uint32_t>(dst, count, bits);
      break;
    case 8:
      launch_fill<uint64_t>(dst, count, bits);
      break;
    default:
      PDEGEN_THROW("fill of {}-byte elements", element_bytes);
  }
}

}  // namespace pdegen::cuda

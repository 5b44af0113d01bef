// dst += src over device memory of one storage type (a tensor read by two layers gets the sum of its
// readers' gradients): fp32 arithmetic, stored through from_float<T> like every 16-bit kernel.
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_context.hpp"
#include "core/device_allocator.hpp"

namespace pdegen::cuda {

namespace {
template <class T>
__global__ void add_kernel(T* __restrict__ dst, const T* __restrict__ src, int64_t count) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) dst[i] = from_float<T>(to_float(dst[i]) + to_float(src[i]));
}
}  // namespace

void add_elements(void* dst, const void* src, DType dtype, int64_t count) {
  if (count == 0) return;
  with_storage_type(dtype, [&](auto storage) {
    using T = decltype(storage);
    add_kernel<T>
        <<<blocks_for(count), 256, 0, stream()>>>(static_cast<T*>(dst), static_cast<const T*>(src), count);
  });
  CUDA_CHECK_LAUNCH();
}

}  // namespace pdegen::cuda

// The unscale-and-check pass of dynamic loss scaling on the GPU (see loss_scaler.hpp): one
// grid-stride pass multiplies every gradient by 1 / scale and raises a device flag where a value is
// inf or nan. Every writer stores the same 1, so the flag needs no atomics and its value does not
// depend on the order.
#include <algorithm>
#include <cfloat>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_context.hpp"
#include "optim/loss_scaler.hpp"

namespace pdegen {

namespace {

__global__ void unscale_kernel(float* data, int64_t n, float inv_scale, int* overflow) {
  bool bad = false;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const float v = data[i];
    bad |= !(fabsf(v) <= FLT_MAX);
    data[i] = v * inv_scale;
  }
  if (bad) *overflow = 1;
}

}  // namespace

bool unscale_and_check_cuda(float* data, int64_t n, float inv_scale) {
  cudaStream_t stream = cuda::stream();
  // A fresh device int per call: the caching allocator behind Tensor recycles it.
  Tensor flag = Tensor::zeros(Shape{1}, DType::f32, Device::cuda);
  int* overflow = static_cast<int*>(flag.raw());  // 4 zero bytes read as an int: 0
  if (n > 0) {
    // Enough blocks to fill the GPU; the grid-stride loop covers the rest.
    const unsigned blocks = std::min(cuda::blocks_for(n), 65535u);
    unscale_kernel<<<blocks, 256, 0, stream>>>(data, n, inv_scale, overflow);
    CUDA_CHECK_LAUNCH();
  }
  int host = 0;
  CUDA_CHECK(cudaMemcpyAsync(&host, overflow, sizeof(int), cudaMemcpyDeviceToHost, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  return host != 0;
}

}  // namespace pdegen

// BurgersLift's boundary overwrite on the GPU: one thread per fixed node (row t = 0, then column x = 0
// above it) of each sample.
#include <algorithm>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_context.hpp"
#include "physics/burgers_lift.hpp"

namespace pdegen {

namespace {
__global__ void set_boundary_kernel(float* u, const float* input, int64_t samples, int64_t nt, int64_t nx,
                                    int64_t input_channels) {
  const int64_t per = nx + nt - 1, plane = nt * nx;
  for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; idx < samples * per;
       idx += int64_t{gridDim.x} * blockDim.x) {
    const int64_t s = idx / per, k = idx % per;
    if (k < nx)
      u[s * plane + k] = input != nullptr ? input[s * input_channels * plane + k] : 0.0f;
    else
      u[s * plane + (k - nx + 1) * nx] = 0.0f;
  }
}
}  // namespace

void BurgersLift::set_boundary_cuda(Tensor& u, const Tensor* input) {
  const int64_t samples = u.dim(0), nt = u.dim(2), nx = u.dim(3);
  if (samples == 0) return;
  set_boundary_kernel<<<std::min(cuda::blocks_for(samples * (nx + nt - 1)), 65535u), 256, 0,
                        cuda::stream()>>>(u.data<float>(), input != nullptr ? input->data<float>() : nullptr,
                                          samples, nt, nx, input != nullptr ? input->dim(1) : 1);
  CUDA_CHECK_LAUNCH();
}

}  // namespace pdegen

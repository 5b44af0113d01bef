// BoundaryLift's column overwrite on the GPU: one thread per node line along x writes its x = 0 and x = 1
// values (see boundary_lift.cpp for why that is the whole lift).
#include <algorithm>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_context.hpp"
#include "physics/boundary_lift.hpp"

namespace pdegen {

namespace {
__global__ void set_columns_kernel(float* p, int64_t rows, int64_t nx, float left, float right) {
  for (int64_t r = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; r < rows;
       r += int64_t{gridDim.x} * blockDim.x) {
    p[r * nx] = left;
    p[r * nx + nx - 1] = right;
  }
}
}  // namespace

void BoundaryLift::set_columns_cuda(Tensor& t, float left, float right) {
  const int64_t nx = t.dim(t.rank() - 1), rows = t.numel() / nx;
  if (rows == 0) return;
  set_columns_kernel<<<std::min(cuda::blocks_for(rows), 65535u), 256, 0, cuda::stream()>>>(
      t.data<float>(), rows, nx, left, right);
  CUDA_CHECK_LAUNCH();
}

}  // namespace pdegen

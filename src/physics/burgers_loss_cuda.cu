// BurgersLoss on the GPU: the element arithmetic of burgers_kernels.hpp, in fp64, one thread per node
// (per element for the least-squares values). Each node gathers from its elements, so no two threads
// write one value; the per-node contributions come back to the host and are summed there in the CPU's
// order (rows in order, along a row x in order, then the penalty), so the loss is the same run to run.
#include <algorithm>
#include <vector>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_context.hpp"
#include "physics/burgers_kernels.hpp"
#include "physics/burgers_loss.hpp"

namespace pdegen {

namespace {

constexpr int threads = 256;

struct Batch {
  burgers::Grid g;
  int64_t samples = 0, plane = 0;  // nt * nx
  int64_t input_channels = 1;
};

unsigned grid_for(int64_t n) { return std::min(cuda::blocks_for(n), 65535u); }

#define FOR_NODES(b, idx)                                                                           \
  for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; idx < (b).samples * (b).plane; \
       idx += int64_t{gridDim.x} * blockDim.x)

// contribution = R^2 / (hx ht) and lambda = dJ/dR = 2 R / (hx ht) on the test nodes, 0 elsewhere.
__global__ void galerkin_residual_kernel(const float* __restrict__ u, Batch b, double* __restrict__ lambda,
                                         double* __restrict__ contribution) {
  FOR_NODES(b, idx) {
    const int64_t s = idx / b.plane, node = idx % b.plane;
    const int n = static_cast<int>(node / b.g.nx), j = static_cast<int>(node % b.g.nx);
    const double inv_area = 1.0 / (b.g.hx * b.g.ht);
    const bool test = n > 0 && j > 0;
    const double R = test ? burgers::galerkin_residual(u + s * b.plane, b.g, n, j) : 0.0;
    contribution[idx] = inv_area * R * R;
    lambda[idx] = 2.0 * inv_area * R;
  }
}

__global__ void galerkin_gradient_kernel(const float* __restrict__ u, const double* __restrict__ lambda,
                                         Batch b, double scale, float* __restrict__ du) {
  FOR_NODES(b, idx) {
    const int64_t s = idx / b.plane, node = idx % b.plane;
    const int n = static_cast<int>(node / b.g.nx), j = static_cast<int>(node % b.g.nx);
    du[idx] = static_cast<float>(
        scale * burgers::galerkin_gradient(u + s * b.plane, lambda + s * b.plane, b.g, n, j));
  }
}

// contribution at node (en, ej) = element (en, ej)'s least-squares value; 0 on the last row and column.
__global__ void least_squares_kernel(const float* __restrict__ u, Batch b,
                                     double* __restrict__ contribution) {
  FOR_NODES(b, idx) {
    const int64_t s = idx / b.plane, node = idx % b.plane;
    const int n = static_cast<int>(node / b.g.nx), j = static_cast<int>(node % b.g.nx);
    contribution[idx] =
        n < b.g.nt - 1 && j < b.g.nx - 1 ? burgers::least_squares_element(u + s * b.plane, b.g, n, j) : 0.0;
  }
}

__global__ void least_squares_gradient_kernel(const float* __restrict__ u, Batch b, double scale,
                                              float* __restrict__ du) {
  FOR_NODES(b, idx) {
    const int64_t s = idx / b.plane, node = idx % b.plane;
    const int n = static_cast<int>(node / b.g.nx), j = static_cast<int>(node % b.g.nx);
    du[idx] = static_cast<float>(scale * burgers::least_squares_gradient(u + s * b.plane, b.g, n, j));
  }
}

// The penalty on the nx nodes of row t = 0 (then the nt - 1 of column x = 0 above it) of each sample:
// its value per boundary node, and (with du) its gradient added there; each node is one thread's.
__global__ void penalty_kernel(const float* __restrict__ u, const float* __restrict__ input, Batch b,
                               double beta, double scale, double* __restrict__ value,
                               float* __restrict__ du) {
  const int64_t per = b.g.nx + b.g.nt - 1;
  for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; idx < b.samples * per;
       idx += int64_t{gridDim.x} * blockDim.x) {
    const int64_t s = idx / per, k = idx % per;
    const bool row = k < b.g.nx;
    const int64_t node = row ? k : (k - b.g.nx + 1) * b.g.nx;
    const double target = row ? input[s * b.input_channels * b.plane + k] : 0.0;  // channel 0: b(x)
    const double e = static_cast<double>(u[s * b.plane + node]) - target, w = row ? b.g.hx : b.g.ht;
    value[idx] = beta * w * e * e;
    if (du != nullptr) du[s * b.plane + node] += static_cast<float>(scale * 2.0 * beta * w * e);
  }
}

std::vector<double> to_host(const Tensor& t) {
  std::vector<double> host(static_cast<size_t>(t.numel()));
  CUDA_CHECK(cudaMemcpyAsync(host.data(), t.data<double>(), host.size() * sizeof(double),
                             cudaMemcpyDeviceToHost, cuda::stream()));
  CUDA_CHECK(cudaStreamSynchronize(cuda::stream()));
  return host;
}

}  // namespace

double BurgersLoss::evaluate_cuda(const Tensor& u, const Tensor& input, double grad_scale, Tensor* du,
                                  std::vector<double>* per_sample) const {
  const int nt = static_cast<int>(u.dim(2)), nx = static_cast<int>(u.dim(3));
  const Batch b{{nx, nt, 1.0 / (nx - 1), settings_.t_final / (nt - 1), settings_.viscosity},
                u.dim(0),
                static_cast<int64_t>(nt) * nx,
                input.dim(1)};
  cudaStream_t stream = cuda::stream();
  const int64_t nodes = b.samples * b.plane;
  if (du != nullptr && !(du->shape() == u.shape() && du->dtype() == DType::f32 && du->is_plain() &&
                         du->device() == Device::cuda))
    *du = Tensor::empty(u.shape(), DType::f32, Device::cuda);
  Tensor contribution = Tensor::empty(u.shape(), DType::f64, Device::cuda);
  if (kind_ == LossKind::least_squares) {
    least_squares_kernel<<<grid_for(nodes), threads, 0, stream>>>(u.data<float>(), b,
                                                                  contribution.data<double>());
    CUDA_CHECK_LAUNCH();
    if (du != nullptr) {
      least_squares_gradient_kernel<<<grid_for(nodes), threads, 0, stream>>>(u.data<float>(), b, grad_scale,
                                                                             du->data<float>());
      CUDA_CHECK_LAUNCH();
    }
  } else {
    Tensor lambda = Tensor::empty(u.shape(), DType::f64, Device::cuda);
    galerkin_residual_kernel<<<grid_for(nodes), threads, 0, stream>>>(
        u.data<float>(), b, lambda.data<double>(), contribution.data<double>());
    CUDA_CHECK_LAUNCH();
    if (du != nullptr) {
      galerkin_gradient_kernel<<<grid_for(nodes), threads, 0, stream>>>(
          u.data<float>(), lambda.data<double>(), b, grad_scale, du->data<float>());
      CUDA_CHECK_LAUNCH();
    }
  }
  const bool penalty = settings_.boundary == BoundaryTreatment::penalty;
  const int64_t per_boundary = nx + nt - 1;
  Tensor boundary;  // the penalty's per-node values, only when there is a penalty
  if (penalty) {
    boundary = Tensor::empty(Shape{b.samples * per_boundary}, DType::f64, Device::cuda);
    penalty_kernel<<<grid_for(b.samples * per_boundary), threads, 0, stream>>>(
        u.data<float>(), input.data<float>(), b, settings_.boundary_factor, grad_scale,
        boundary.data<double>(), du != nullptr ? du->data<float>() : nullptr);
    CUDA_CHECK_LAUNCH();
  }
  const std::vector<double> values = to_host(contribution);
  const std::vector<double> edges = penalty ? to_host(boundary) : std::vector<double>();
  std::vector<double> sums(static_cast<size_t>(b.samples), 0.0);
  for (int64_t s = 0; s < b.samples; ++s) {
    double J = 0;
    for (int n = 0; n < nt; ++n) {
      double row = 0;
      for (int j = 0; j < nx; ++j)
        row += values[static_cast<size_t>(s * b.plane + static_cast<int64_t>(n) * nx + j)];
      J += row;
    }
    if (penalty)
      for (int64_t k = 0; k < per_boundary; ++k) J += edges[static_cast<size_t>(s * per_boundary + k)];
    sums[static_cast<size_t>(s)] = J;
  }
  double total = 0;
  for (double v : sums) total += v;
  if (per_sample != nullptr) *per_sample = std::move(sums);
  return total;
}

}  // namespace pdegen

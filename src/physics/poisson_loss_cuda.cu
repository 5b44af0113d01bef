// PoissonLoss2D on the GPU, from the same q1 element kernels as the CPU sweep, in fp64. The nodal
// coefficient exp(log nu) is computed once per node. The energy is reduced per element row by one
// block (a fixed tree in shared memory), the rows of a sample then added in order by one thread, so
// the loss is the same run to run (no atomics). The gradient is gathered per node: each node
// re-evaluates the (up to four) elements around it and adds their contributions in the CPU's order,
// (element row j - 1) + (element row j), left element before right; no element writes to shared
// nodes, so again no atomics. The residual loss keeps r = K u - F in an fp64 buffer for its second
// pass, 2 K (m r).
#include <algorithm>
#include <vector>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_context.hpp"
#include "physics/poisson_loss.hpp"
#include "physics/q1_kernels.hpp"

namespace pdegen {

namespace {

constexpr int threads = 256;

struct Grid {
  int64_t nx, ny;
  double hx, hy;
  __host__ __device__ int64_t field() const { return nx * ny; }
};

// A node field read as fp64: the network's fp32 u, or the fp64 residual with the Dirichlet columns
// masked to zero.
struct FloatField {
  const float* u;
  __device__ double operator()(int64_t index, int64_t, int64_t) const { return u[index]; }
};
struct MaskedResidual {
  const double* r;
  __device__ double operator()(int64_t index, int64_t i, int64_t nx) const {
    return i == 0 || i == nx - 1 ? 0.0 : r[index];
  }
};

// Nodal values of element (i, j) of the sample starting at `base`, in q1 local order.
template <class Field>
__device__ void element_values(const Field& f, const double* nu, const Grid& g, int64_t base, int64_t i,
                               int64_t j, double ue[4], double nuq[4]) {
  const int64_t lo = base + j * g.nx + i, hi = lo + g.nx;
  ue[0] = f(lo, i, g.nx);
  ue[1] = f(lo + 1, i + 1, g.nx);
  ue[2] = f(hi, i, g.nx);
  ue[3] = f(hi + 1, i + 1, g.nx);
  const double nue[4] = {nu[lo], nu[lo + 1], nu[hi], nu[hi + 1]};
  q1::gauss_values(nue, nuq);
}

__global__ void nodal_nu_kernel(const float* __restrict__ log_nu, double* __restrict__ nu, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    nu[i] = exp(static_cast<double>(log_nu[i]));
}

// Sum of `value` over the block's threads, by a fixed tree; thread 0 gets the total.
__device__ double block_sum(double value, double* shared) {
  shared[threadIdx.x] = value;
  __syncthreads();
  for (int width = threads / 2; width > 0; width /= 2) {
    if (static_cast<int>(threadIdx.x) < width) shared[threadIdx.x] += shared[threadIdx.x + width];
    __syncthreads();
  }
  return shared[0];
}

// row_energy[s * (ny - 1) + j] = energy of element row j of sample s (grid: element rows x samples).
__global__ void energy_rows_kernel(const float* __restrict__ u, const double* __restrict__ nu, Grid g,
                                   double f, double* __restrict__ row_energy) {
  __shared__ double shared[threads];
  const int64_t j = blockIdx.x, s = blockIdx.y, base = s * g.field();
  const double fq[4] = {f, f, f, f};
  double acc = 0;
  for (int64_t i = threadIdx.x; i < g.nx - 1; i += threads) {
    double ue[4], nuq[4];
    element_values(FloatField{u}, nu, g, base, i, j, ue, nuq);
    acc += q1::element_energy(ue, nuq, fq, g.hx, g.hy);
  }
  const double total = block_sum(acc, shared);
  if (threadIdx.x == 0) row_energy[s * (g.ny - 1) + j] = total;
}

// row_sq[s * ny + j] = sum of r^2 over the free nodes (1 .. nx - 2) of node row j of sample s.
__global__ void residual_rows_kernel(const double* __restrict__ r, Grid g, double* __restrict__ row_sq) {
  __shared__ double shared[threads];
  const int64_t j = blockIdx.x, s = blockIdx.y;
  const double* row = r + s * g.field() + j * g.nx;
  double acc = 0;
  for (int64_t i = 1 + threadIdx.x; i < g.nx - 1; i += threads) acc += row[i] * row[i];
  const double total = block_sum(acc, shared);
  if (threadIdx.x == 0) row_sq[s * g.ny + j] = total;
}

// per_sample[s] = the sample's `rows` row values added in order.
__global__ void sample_sums_kernel(const double* __restrict__ rows, int64_t count, int64_t samples,
                                   double* __restrict__ per_sample) {
  const int64_t s = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (s >= samples) return;
  double acc = 0;
  for (int64_t j = 0; j < count; ++j) acc += rows[s * count + j];
  per_sample[s] = acc;
}

// The energy gradient (K w - F with source f) at node (i, j) of a sample, from the elements around
// it, in the CPU sweep's order: node row j is (upper nodes of element row j - 1) + (lower nodes of
// element row j), and along a row, element i - 1 before element i.
template <class Field>
__device__ double node_gradient(const Field& w, const double* nu, const Grid& g, int64_t base, int64_t i,
                                int64_t j, double f) {
  const double fq[4] = {f, f, f, f};
  // Component `a` of the gradient of element (ei, ej).
  const auto part = [&](int64_t ei, int64_t ej, int a) {
    double ue[4], nuq[4], ge[4];
    element_values(w, nu, g, base, ei, ej, ue, nuq);
    q1::element_gradient(ue, nuq, fq, g.hx, g.hy, ge);
    return ge[a];
  };
  // node_sums of the CPU: node i gets (element i - 1, right local node) + (element i, left local node).
  const auto row_sum = [&](int64_t ej, int left_node, int right_node) {
    if (i == 0) return part(0, ej, left_node);
    if (i == g.nx - 1) return part(g.nx - 2, ej, right_node);
    return part(i - 1, ej, right_node) + part(i, ej, left_node);
  };
  if (j == 0) return row_sum(0, 0, 1);
  if (j == g.ny - 1) return row_sum(g.ny - 2, 2, 3);
  return row_sum(j - 1, 2, 3) + row_sum(j, 0, 1);
}

// out[node] = the gradient at every node of every sample: fp32 scaled (du), or fp64 (the residual).
template <class Field, class Out>
__global__ void gradient_kernel(Field w, const double* __restrict__ nu, Grid g, int64_t samples, double f,
                                double scale, Out* __restrict__ out) {
  const int64_t total = samples * g.field();
  for (int64_t k = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; k < total;
       k += int64_t{gridDim.x} * blockDim.x) {
    const int64_t s = k / g.field(), node = k % g.field(), i = node % g.nx, j = node / g.nx;
    const double value = node_gradient(w, nu, g, s * g.field(), i, j, f);
    out[k] = static_cast<Out>(scale * value);
  }
}

unsigned grid_for(int64_t n) { return std::min(cuda::blocks_for(n), 65535u); }

void check_device_field(const Tensor& t, const char* what) {
  PDEGEN_CHECK(
      t.rank() == 4 && t.dim(1) == 1 && t.is_plain() && t.dtype() == DType::f32 && t.device() == Device::cuda,
      "Poisson loss {} must be a plain fp32 [b, 1, Ny, Nx] tensor on the GPU, got {}", what, t.describe());
}

}  // namespace

double PoissonLoss2D::evaluate_cuda(const Tensor& u, const Tensor& log_nu, double grad_scale, Tensor* du,
                                    std::vector<double>* per_sample) const {
  check_device_field(u, "field u");
  check_device_field(log_nu, "coefficient log nu");
  PDEGEN_CHECK(u.shape() == log_nu.shape(), "u is {} but log nu is {}", u.shape().str(),
               log_nu.shape().str());
  const int64_t b = u.dim(0), ny = u.dim(2), nx = u.dim(3);
  PDEGEN_CHECK(nx >= 2 && ny >= 2, "a Q1 grid needs at least 2 x 2 nodes, got {} x {}", nx, ny);
  PDEGEN_CHECK(b <= 65535 && ny <= 0x7fffffff, "GPU Poisson loss supports at most 65535 samples, got {}", b);
  const Grid g{nx, ny, 1.0 / static_cast<double>(nx - 1), 1.0 / static_cast<double>(ny - 1)};
  if (du != nullptr && !(du->shape() == u.shape() && du->dtype() == DType::f32 && du->is_plain() &&
                         du->device() == Device::cuda))
    *du = Tensor::empty(u.shape(), DType::f32, Device::cuda);
  cudaStream_t stream = cuda::stream();
  const int64_t nodes = u.numel();
  const FloatField u_field{u.data<float>()};

  Tensor nu = Tensor::empty(u.shape(), DType::f64, Device::cuda);
  nodal_nu_kernel<<<grid_for(nodes), threads, 0, stream>>>(log_nu.data<float>(), nu.data<double>(), nodes);
  CUDA_CHECK_LAUNCH();

  // Per-row values, then per-sample sums in row order.
  int64_t rows_per_sample = 0;
  Tensor rows;
  if (kind_ == LossKind::energy) {
    rows_per_sample = ny - 1;
    rows = Tensor::empty(Shape{b * rows_per_sample}, DType::f64, Device::cuda);
    energy_rows_kernel<<<dim3(static_cast<unsigned>(ny - 1), static_cast<unsigned>(b)), threads, 0, stream>>>(
        u.data<float>(), nu.data<double>(), g, source_, rows.data<double>());
    CUDA_CHECK_LAUNCH();
    if (du != nullptr) {
      gradient_kernel<<<grid_for(nodes), threads, 0, stream>>>(u_field, nu.data<double>(), g, b, source_,
                                                               grad_scale, du->data<float>());
      CUDA_CHECK_LAUNCH();
    }
  } else {
    // r = K u - F, kept whole for the second pass; its free-node squares summed per row.
    Tensor r = Tensor::empty(u.shape(), DType::f64, Device::cuda);
    gradient_kernel<<<grid_for(nodes), threads, 0, stream>>>(u_field, nu.data<double>(), g, b, source_, 1.0,
                                                             r.data<double>());
    CUDA_CHECK_LAUNCH();
    rows_per_sample = ny;
    rows = Tensor::empty(Shape{b * rows_per_sample}, DType::f64, Device::cuda);
    residual_rows_kernel<<<dim3(static_cast<unsigned>(ny), static_cast<unsigned>(b)), threads, 0, stream>>>(
        r.data<double>(), g, rows.data<double>());
    CUDA_CHECK_LAUNCH();
    if (du != nullptr) {
      // dJ/du = 2 K^T (m r) = 2 K (m r): K is symmetric; m zeroes the Dirichlet columns.
      gradient_kernel<<<grid_for(nodes), threads, 0, stream>>>(
          MaskedResidual{r.data<double>()}, nu.data<double>(), g, b, 0.0, 2 * grad_scale, du->data<float>());
      CUDA_CHECK_LAUNCH();
    }
  }
  Tensor sums = Tensor::empty(Shape{b}, DType::f64, Device::cuda);
  sample_sums_kernel<<<cuda::blocks_for(b), threads, 0, stream>>>(rows.data<double>(), rows_per_sample, b,
                                                                  sums.data<double>());
  CUDA_CHECK_LAUNCH();

  std::vector<double> host(static_cast<size_t>(b));
  CUDA_CHECK(cudaMemcpyAsync(host.data(), sums.data<double>(), host.size() * sizeof(double),
                             cudaMemcpyDeviceToHost, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  double total = 0;  // samples in order, as on the CPU
  for (double v : host) total += v;
  if (per_sample != nullptr) *per_sample = std::move(host);
  return total;
}

}  // namespace pdegen

// PoissonLoss on the GPU, in 2D and 3D, from the same q1 element kernels as the CPU sweep, in fp64.
// The nodal coefficient exp(log nu) is computed once per node. The energy is reduced per element line
// along x by one block (a fixed tree in shared memory), the lines of a sample then added in order by
// one thread, so the loss is the same run to run (no atomics). The gradient is gathered per node:
// each node re-evaluates the (up to 2^Dim) elements around it and adds their contributions in the
// CPU's order, outermost axis first: (element slab below) + (element slab above), within a slab
// (element row below) + (element row above), along a row the left element before the right one; no
// element writes to shared nodes, so again no atomics. The residual loss keeps r = K u - F in an fp64
// buffer for its second pass, 2 K (m r).
#include <algorithm>
#include <vector>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_context.hpp"
#include "physics/poisson_loss.hpp"
#include "physics/q1_kernels.hpp"

namespace pdegen {

namespace {

constexpr int threads = 256;

// Node counts and spacings per axis, x first.
template <int Dim>
struct Grid {
  int64_t n[Dim];
  double h[Dim];
  __host__ __device__ int64_t field() const {
    int64_t s = 1;
    for (int d = 0; d < Dim; ++d) s *= n[d];
    return s;
  }
  // Node lines along x, and element lines along x.
  __host__ __device__ int64_t lines() const { return field() / n[0]; }
  __host__ __device__ int64_t element_lines() const {
    int64_t s = 1;
    for (int d = 1; d < Dim; ++d) s *= n[d] - 1;
    return s;
  }
};

// A node field read as fp64: the network's fp32 u, or the fp64 residual with the Dirichlet nodes
// (first and last of every x line) masked to zero.
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

// Nodal values of the element with first node e (per axis) of the sample starting at `base`, in q1
// local order.
template <int Dim, class Field>
__device__ void element_values(const Field& f, const double* nu, const Grid<Dim>& g, int64_t base,
                               const int64_t e[Dim], double ue[q1::nodes<Dim>], double nuq[q1::nodes<Dim>]) {
  double nue[q1::nodes<Dim>];
  for (int a = 0; a < q1::nodes<Dim>; ++a) {
    int64_t index = 0;
    for (int d = Dim - 1; d >= 0; --d) index = index * g.n[d] + e[d] + ((a >> d) & 1);
    ue[a] = f(base + index, e[0] + (a & 1), g.n[0]);
    nue[a] = nu[base + index];
  }
  q1::gauss_values<Dim>(nue, nuq);
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

// line_energy[s * lines + L] = energy of element line L (y fastest, then z) of sample s
// (grid: element lines x samples).
template <int Dim>
__global__ void energy_lines_kernel(const float* __restrict__ u, const double* __restrict__ nu, Grid<Dim> g,
                                    double f, double* __restrict__ line_energy) {
  __shared__ double shared[threads];
  const int64_t line = blockIdx.x, s = blockIdx.y, base = s * g.field();
  int64_t e[Dim];
  for (int64_t d = 1, rest = line; d < Dim; rest /= g.n[d] - 1, ++d) e[d] = rest % (g.n[d] - 1);
  double fq[q1::nodes<Dim>];
  for (int q = 0; q < q1::nodes<Dim>; ++q) fq[q] = f;
  double acc = 0;
  for (int64_t i = threadIdx.x; i < g.n[0] - 1; i += threads) {
    double ue[q1::nodes<Dim>], nuq[q1::nodes<Dim>];
    e[0] = i;
    element_values(FloatField{u}, nu, g, base, e, ue, nuq);
    acc += q1::element_energy<Dim>(ue, nuq, fq, g.h);
  }
  const double total = block_sum(acc, shared);
  if (threadIdx.x == 0) line_energy[s * g.element_lines() + line] = total;
}

// line_sq[s * lines + L] = sum of r^2 over the free nodes (1 .. nx - 2) of node line L of sample s.
template <int Dim>
__global__ void residual_lines_kernel(const double* __restrict__ r, Grid<Dim> g,
                                      double* __restrict__ line_sq) {
  __shared__ double shared[threads];
  const int64_t line = blockIdx.x, s = blockIdx.y, nx = g.n[0];
  const double* row = r + s * g.field() + line * nx;
  double acc = 0;
  for (int64_t i = 1 + threadIdx.x; i < nx - 1; i += threads) acc += row[i] * row[i];
  const double total = block_sum(acc, shared);
  if (threadIdx.x == 0) line_sq[s * g.lines() + line] = total;
}

// per_sample[s] = the sample's `lines` line values added in order.
__global__ void sample_sums_kernel(const double* __restrict__ lines, int64_t count, int64_t samples,
                                   double* __restrict__ per_sample) {
  const int64_t s = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (s >= samples) return;
  double acc = 0;
  for (int64_t j = 0; j < count; ++j) acc += lines[s * count + j];
  per_sample[s] = acc;
}

// The sum over the elements around `node` of part(element, local node index of `node` in it), in the
// CPU sweep's order: along axis Axis the element below (where the node has bit Axis set) before the
// element above, the axes from the outermost down to x.
template <int Dim, int Axis, class Part>
__device__ double gather(const Part& part, const Grid<Dim>& g, const int64_t node[Dim], int64_t elem[Dim],
                         int local) {
  if constexpr (Axis < 0) {
    return part(elem, local);
  } else {
    const int64_t c = node[Axis];
    if (c > 0) {
      elem[Axis] = c - 1;
      const double below = gather<Dim, Axis - 1>(part, g, node, elem, local | (1 << Axis));
      if (c == g.n[Axis] - 1) return below;
      elem[Axis] = c;
      return below + gather<Dim, Axis - 1>(part, g, node, elem, local);
    }
    elem[Axis] = c;
    return gather<Dim, Axis - 1>(part, g, node, elem, local);
  }
}

// The energy gradient (K w - F with source f) at `node` of a sample, from the elements around it.
template <int Dim, class Field>
__device__ double node_gradient(const Field& w, const double* nu, const Grid<Dim>& g, int64_t base,
                                const int64_t node[Dim], double f) {
  double fq[q1::nodes<Dim>];
  for (int q = 0; q < q1::nodes<Dim>; ++q) fq[q] = f;
  // Component `a` of the gradient of element e.
  const auto part = [&](const int64_t* e, int a) {
    double ue[q1::nodes<Dim>], nuq[q1::nodes<Dim>], ge[q1::nodes<Dim>];
    element_values(w, nu, g, base, e, ue, nuq);
    q1::element_gradient<Dim>(ue, nuq, fq, g.h, ge);
    return ge[a];
  };
  int64_t elem[Dim];
  return gather<Dim, Dim - 1>(part, g, node, elem, 0);
}

// out[node] = the gradient at every node of every sample: fp32 scaled (du), or fp64 (the residual).
template <int Dim, class Field, class Out>
__global__ void gradient_kernel(Field w, const double* __restrict__ nu, Grid<Dim> g, int64_t samples,
                                double f, double scale, Out* __restrict__ out) {
  const int64_t field = g.field(), total = samples * field;
  for (int64_t k = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; k < total;
       k += int64_t{gridDim.x} * blockDim.x) {
    const int64_t s = k / field;
    int64_t node[Dim];
    for (int64_t d = 0, rest = k % field; d < Dim; rest /= g.n[d], ++d) node[d] = rest % g.n[d];
    const double value = node_gradient(w, nu, g, s * field, node, f);
    out[k] = static_cast<Out>(scale * value);
  }
}

unsigned grid_for(int64_t n) { return std::min(cuda::blocks_for(n), 65535u); }

void check_device_field(const Tensor& t, const char* what) {
  PDEGEN_CHECK((t.rank() == 4 || t.rank() == 5) && t.dim(1) == 1 && t.is_plain() && t.dtype() == DType::f32 &&
                   t.device() == Device::cuda,
               "Poisson loss {} must be a plain fp32 [b, 1, Ny, Nx] or [b, 1, Nz, Ny, Nx] tensor on the GPU, "
               "got {}",
               what, t.describe());
}

// The per-sample losses of u (on the device, summed per line then per sample in order), to the host;
// du filled when given.
template <int Dim>
std::vector<double> evaluate_on_device(LossKind kind, double source, const Tensor& u, const Tensor& log_nu,
                                       double grad_scale, Tensor* du) {
  Grid<Dim> g{};
  for (int d = 0; d < Dim; ++d) {
    g.n[d] = u.dim(u.rank() - 1 - d);
    PDEGEN_CHECK(g.n[d] >= 2, "a Q1 grid needs at least 2 nodes per axis, got {} along axis {}", g.n[d], d);
    g.h[d] = 1.0 / static_cast<double>(g.n[d] - 1);
  }
  const int64_t b = u.dim(0);
  PDEGEN_CHECK(b <= 65535 && g.lines() <= 0x7fffffff,
               "GPU Poisson loss supports at most 65535 samples, got {}", b);
  cudaStream_t stream = cuda::stream();
  const int64_t nodes = u.numel();
  const FloatField u_field{u.data<float>()};

  Tensor nu = Tensor::empty(u.shape(), DType::f64, Device::cuda);
  nodal_nu_kernel<<<grid_for(nodes), threads, 0, stream>>>(log_nu.data<float>(), nu.data<double>(), nodes);
  CUDA_CHECK_LAUNCH();

  // Per-line values, then per-sample sums in line order.
  int64_t lines_per_sample = 0;
  Tensor lines;
  if (kind == LossKind::energy) {
    lines_per_sample = g.element_lines();
    lines = Tensor::empty(Shape{b * lines_per_sample}, DType::f64, Device::cuda);
    energy_lines_kernel<Dim>
        <<<dim3(static_cast<unsigned>(lines_per_sample), static_cast<unsigned>(b)), threads, 0, stream>>>(
            u.data<float>(), nu.data<double>(), g, source, lines.data<double>());
    CUDA_CHECK_LAUNCH();
    if (du != nullptr) {
      gradient_kernel<<<grid_for(nodes), threads, 0, stream>>>(u_field, nu.data<double>(), g, b, source,
                                                               grad_scale, du->data<float>());
      CUDA_CHECK_LAUNCH();
    }
  } else {
    // r = K u - F, kept whole for the second pass; its free-node squares summed per line.
    Tensor r = Tensor::empty(u.shape(), DType::f64, Device::cuda);
    gradient_kernel<<<grid_for(nodes), threads, 0, stream>>>(u_field, nu.data<double>(), g, b, source, 1.0,
                                                             r.data<double>());
    CUDA_CHECK_LAUNCH();
    lines_per_sample = g.lines();
    lines = Tensor::empty(Shape{b * lines_per_sample}, DType::f64, Device::cuda);
    residual_lines_kernel<Dim>
        <<<dim3(static_cast<unsigned>(lines_per_sample), static_cast<unsigned>(b)), threads, 0, stream>>>(
            r.data<double>(), g, lines.data<double>());
    CUDA_CHECK_LAUNCH();
    if (du != nullptr) {
      // dJ/du = 2 K^T (m r) = 2 K (m r): K is symmetric; m zeroes the Dirichlet nodes.
      gradient_kernel<<<grid_for(nodes), threads, 0, stream>>>(
          MaskedResidual{r.data<double>()}, nu.data<double>(), g, b, 0.0, 2 * grad_scale, du->data<float>());
      CUDA_CHECK_LAUNCH();
    }
  }
  Tensor sums = Tensor::empty(Shape{b}, DType::f64, Device::cuda);
  sample_sums_kernel<<<cuda::blocks_for(b), threads, 0, stream>>>(lines.data<double>(), lines_per_sample, b,
                                                                  sums.data<double>());
  CUDA_CHECK_LAUNCH();

  std::vector<double> host(static_cast<size_t>(b));
  CUDA_CHECK(cudaMemcpyAsync(host.data(), sums.data<double>(), host.size() * sizeof(double),
                             cudaMemcpyDeviceToHost, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  return host;
}

}  // namespace

double PoissonLoss::evaluate_cuda(const Tensor& u, const Tensor& log_nu, double grad_scale, Tensor* du,
                                  std::vector<double>* per_sample) const {
  check_device_field(u, "field u");
  check_device_field(log_nu, "coefficient log nu");
  PDEGEN_CHECK(u.shape() == log_nu.shape(), "u is {} but log nu is {}", u.shape().str(),
               log_nu.shape().str());
  if (du != nullptr && !(du->shape() == u.shape() && du->dtype() == DType::f32 && du->is_plain() &&
                         du->device() == Device::cuda))
    *du = Tensor::empty(u.shape(), DType::f32, Device::cuda);
  std::vector<double> host = u.rank() == 5 ? evaluate_on_device<3>(kind_, source_, u, log_nu, grad_scale, du)
                                           : evaluate_on_device<2>(kind_, source_, u, log_nu, grad_scale, du);
  double total = 0;  // samples in order, as on the CPU
  for (double v : host) total += v;
  if (per_sample != nullptr) *per_sample = std::move(host);
  return total;
}

}  // namespace pdegen

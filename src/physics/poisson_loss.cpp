// PoissonLoss2D on the CPU. One sweep over element rows serves the energy, its gradient, K u and the
// residual: the rows are split into one contiguous block per thread; a block keeps its two current
// coefficient rows (exp'd once per row, not per element) and writes every node row it owns alone.
// Each node row j sums (elements of row j - 1) + (elements of row j) in that order; the two rows at
// a block's edges are finished after all blocks, from the partial sums the blocks left. So there
// are no races, no atomics, and the result does not depend on the thread count. Along a row the
// shared q1 kernels run on eight elements at a time (Lanes), the same source the CUDA kernels use.
#include "physics/poisson_loss.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "physics/q1_kernels.hpp"

namespace pdegen {

namespace {

struct Grid {
  int64_t nx, ny;
  double hx, hy;
};

Grid grid_of(int64_t nx, int64_t ny) {
  PDEGEN_CHECK(nx >= 2 && ny >= 2, "a Q1 grid needs at least 2 x 2 nodes, got {} x {}", nx, ny);
  return Grid{nx, ny, 1.0 / static_cast<double>(nx - 1), 1.0 / static_cast<double>(ny - 1)};
}

// Eight fp64 lanes with the operations the q1 kernels use (+, -, *, /, broadcast from a double).
// Instantiated with it, q1::element_energy and q1::element_gradient evaluate eight neighbouring
// elements per call, each lane doing the operations of T = double in the same order: one AVX-512
// register (two AVX2 ones). GCC does not vectorise the kernels' small nested loops across elements by
// itself (measured: scalar code, 4x slower).
class Lanes {
 public:
  static constexpr int width = 8;
  Lanes() = default;
  Lanes(double s) : v_(Raw{} + s) {}  // implicit: the kernels write `T x = 0` and `T(2)`
  static Lanes load(const double* p) {
    Lanes r;
    std::memcpy(&r.v_, p, sizeof(Raw));
    return r;
  }
  void store(double* p) const { std::memcpy(p, &v_, sizeof(Raw)); }
  friend Lanes operator+(Lanes a, Lanes b) { return Lanes(a.v_ + b.v_); }
  friend Lanes operator-(Lanes a, Lanes b) { return Lanes(a.v_ - b.v_); }
  friend Lanes operator*(Lanes a, Lanes b) { return Lanes(a.v_ * b.v_); }
  friend Lanes operator/(Lanes a, Lanes b) { return Lanes(a.v_ / b.v_); }
  Lanes& operator+=(Lanes b) {
    v_ += b.v_;
    return *this;
  }
  Lanes& operator-=(Lanes b) {
    v_ -= b.v_;
    return *this;
  }

 private:
  using Raw = double __attribute__((vector_size(width * sizeof(double))));
  explicit Lanes(Raw v) : v_(v) {}
  Raw v_;
};

template <class T>
T load(const double* p);
template <>
inline double load<double>(const double* p) {
  return *p;
}
template <>
inline Lanes load<Lanes>(const double* p) {
  return Lanes::load(p);
}
inline void store(double* p, double v) { *p = v; }
inline void store(double* p, const Lanes& v) { v.store(p); }

// The two node rows of an element row and the per-element outputs.
struct ElementRow {
  const double *u_lo, *u_hi, *nu_lo, *nu_hi;
  double *energy, *e0, *e1, *e2, *e3;
};

// Elements i .. i + lanes - 1 of the row (T = double: one, T = Lanes: eight).
template <class T, bool kEnergy, bool kGradient>
inline void elements_at(const ElementRow& r, int64_t i, double f, double hx, double hy) {
  const T ue[4] = {load<T>(r.u_lo + i), load<T>(r.u_lo + i + 1), load<T>(r.u_hi + i),
                   load<T>(r.u_hi + i + 1)};
  const T nue[4] = {load<T>(r.nu_lo + i), load<T>(r.nu_lo + i + 1), load<T>(r.nu_hi + i),
                    load<T>(r.nu_hi + i + 1)};
  const T fq[4] = {T(f), T(f), T(f), T(f)};
  T nuq[4];
  q1::gauss_values(nue, nuq);
  if constexpr (kEnergy) store(r.energy + i, q1::element_energy(ue, nuq, fq, T(hx), T(hy)));
  if constexpr (kGradient) {
    T ge[4];
    q1::element_gradient(ue, nuq, fq, T(hx), T(hy), ge);
    store(r.e0 + i, ge[0]);
    store(r.e1 + i, ge[1]);
    store(r.e2 + i, ge[2]);
    store(r.e3 + i, ge[3]);
  }
}

// Element row j (between node rows j and j + 1): each element's contributions e0..e3 to the energy
// gradient at its local nodes (kGradient) and its energy (kEnergy).
template <bool kEnergy, bool kGradient>
void element_row(const Grid& g, double f, const ElementRow& r) {
  const int64_t elements = g.nx - 1;
  int64_t i = 0;
  for (; i + Lanes::width <= elements; i += Lanes::width)
    elements_at<Lanes, kEnergy, kGradient>(r, i, f, g.hx, g.hy);
  for (; i < elements; ++i) elements_at<double, kEnergy, kGradient>(r, i, f, g.hx, g.hy);
}

// Sum of an element row's energies in a fixed order (eight interleaved partial sums, then those in
// order), so the value does not depend on how the compiler vectorised anything.
double row_sum(const double* e, int64_t count) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= count; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += e[i + k];
  for (int k = 0; i < count; ++i, ++k) acc[k] += e[i];
  double s = 0;
  for (double a : acc) s += a;
  return s;
}

// Node-row sums of one element row's contributions: node i gets (element i - 1) + (element i).
void node_sums(int64_t nx, const double* left_node, const double* right_node, double* out) {
  out[0] = left_node[0];
  for (int64_t i = 1; i < nx - 1; ++i) out[i] = right_node[i - 1] + left_node[i];
  out[nx - 1] = right_node[nx - 2];
}

// One pass over a field. Loaders `row(j, buf)` return node row j in fp64, either a pointer into
// existing memory or `buf` filled. store_row(j, values) receives each finished node row of the
// gradient (kGradient) exactly once; row_energy[j] the energy of element row j (kEnergy).
template <bool kEnergy, bool kGradient, class NuRow, class URow, class StoreRow>
void sweep(const Grid& g, double f, const NuRow& nu_row, const URow& u_row, const StoreRow& store_row,
           double* row_energy) {
  const int64_t element_rows = g.ny - 1, nx = g.nx;
  const int blocks = static_cast<int>(std::min<int64_t>(omp_get_max_threads(), element_rows));
  auto block_start = [=](int blk) { return blk * element_rows / blocks; };
  // Per block: its first node row (elements above only) and last (elements below only).
  std::vector<double> first(kGradient ? static_cast<size_t>(blocks * nx) : 0), last(first.size());
#pragma omp parallel num_threads(blocks)
  {
    std::vector<double> scratch(static_cast<size_t>(12 * nx));
    double* rows[12];
    for (int r = 0; r < 12; ++r) rows[r] = scratch.data() + r * nx;
    double *nu_buf[2] = {rows[0], rows[1]}, *u_buf[2] = {rows[2], rows[3]}, *top[2] = {rows[4], rows[5]};
    double *e0 = rows[6], *e1 = rows[7], *e2 = rows[8], *e3 = rows[9], *node_row = rows[10],
           *energy = rows[11];

#pragma omp for schedule(static)
    for (int blk = 0; blk < blocks; ++blk) {
      const int64_t j0 = block_start(blk), j1 = block_start(blk + 1);
      const double* nu_lo = nu_row(j0, nu_buf[j0 & 1]);
      const double* u_lo = u_row(j0, u_buf[j0 & 1]);
      const double* top_prev = nullptr;
      for (int64_t j = j0; j < j1; ++j) {
        const double* nu_hi = nu_row(j + 1, nu_buf[(j + 1) & 1]);
        const double* u_hi = u_row(j + 1, u_buf[(j + 1) & 1]);
        element_row<kEnergy, kGradient>(g, f, ElementRow{u_lo, u_hi, nu_lo, nu_hi, energy, e0, e1, e2, e3});
        if constexpr (kEnergy) row_energy[j] = row_sum(energy, nx - 1);
        if constexpr (kGradient) {
          double* top_now = top[j & 1];
          node_sums(nx, e2, e3, top_now);
          if (j == j0) {
            node_sums(nx, e0, e1, first.data() + blk * nx);
          } else {
            node_sums(nx, e0, e1, node_row);
            for (int64_t i = 0; i < nx; ++i) node_row[i] = top_prev[i] + node_row[i];
            store_row(j, static_cast<const double*>(node_row));
          }
          top_prev = top_now;
        }
        nu_lo = nu_hi;
        u_lo = u_hi;
      }
      if constexpr (kGradient) std::copy(top_prev, top_prev + nx, last.data() + blk * nx);
    }

    if constexpr (kGradient) {
#pragma omp for schedule(static)
      for (int blk = 0; blk <= blocks; ++blk) {
        if (blk == 0) {
          store_row(int64_t{0}, static_cast<const double*>(first.data()));
        } else if (blk == blocks) {
          store_row(g.ny - 1, static_cast<const double*>(last.data() + (blocks - 1) * nx));
        } else {
          const double *above = last.data() + (blk - 1) * nx, *below = first.data() + blk * nx;
          for (int64_t i = 0; i < nx; ++i) node_row[i] = above[i] + below[i];
          store_row(block_start(blk), static_cast<const double*>(node_row));
        }
      }
    }
  }
}

void check_field(const Tensor& t, const char* what) {
  PDEGEN_CHECK(
      t.rank() == 4 && t.dim(1) == 1 && t.is_plain() && t.dtype() == DType::f32 && t.device() == Device::cpu,
      "Poisson loss {} must be a plain fp32 CPU [b, 1, Ny, Nx] tensor, got {}", what, t.describe());
}

}  // namespace

void nodal_coefficient(const float* log_nu, int64_t count, double* nu) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < count; ++i) nu[i] = std::exp(static_cast<double>(log_nu[i]));
}

void apply_stiffness(const double* nu_nodal, const double* u, double* Ku, int nx, int ny) {
  const Grid g = grid_of(nx, ny);
  auto nu_row = [=](int64_t j, double*) { return nu_nodal + j * g.nx; };
  auto u_row = [=](int64_t j, double*) { return u + j * g.nx; };
  auto store = [=](int64_t j, const double* row) { std::copy(row, row + g.nx, Ku + j * g.nx); };
  sweep<false, true>(g, 0.0, nu_row, u_row, store, nullptr);
}

void load_vector(double f, int nx, int ny, double* F) {
  const Grid g = grid_of(nx, ny);
  const double fq[4] = {f, f, f, f};
  double fe[4];
  q1::element_load(fq, g.hx, g.hy, fe);
#pragma omp parallel for schedule(static)
  for (int64_t j = 0; j < g.ny; ++j)
    for (int64_t i = 0; i < g.nx; ++i) {
      // Node (i, j) is local node 0 of element (i, j), 1 of (i - 1, j), 2 of (i, j - 1), 3 of (i - 1, j - 1).
      const bool right = i<g.nx - 1, left = i> 0, up = j<g.ny - 1, down = j> 0;
      double s = 0;
      if (right && up) s += fe[0];
      if (left && up) s += fe[1];
      if (right && down) s += fe[2];
      if (left && down) s += fe[3];
      F[j * g.nx + i] = s;
    }
}

double PoissonLoss2D::evaluate(const Tensor& u, const Tensor& log_nu, double grad_scale, Tensor* du,
                               std::vector<double>* per_sample) const {
#if defined(PDEGEN_HAVE_CUDA)
  if (u.device() == Device::cuda) return evaluate_cuda(u, log_nu, grad_scale, du, per_sample);
#endif
  check_field(u, "field u");
  check_field(log_nu, "coefficient log nu");
  PDEGEN_CHECK(u.shape() == log_nu.shape(), "u is {} but log nu is {}", u.shape().str(),
               log_nu.shape().str());
  const int64_t b = u.dim(0), ny = u.dim(2), nx = u.dim(3), field = nx * ny;
  const Grid g = grid_of(nx, ny);
  if (du != nullptr && !(du->shape() == u.shape() && du->dtype() == DType::f32 && du->is_plain() &&
                         du->device() == Device::cpu))
    *du = Tensor::empty(u.shape(), DType::f32);
  if (per_sample != nullptr) per_sample->assign(static_cast<size_t>(b), 0.0);

  std::vector<double> row_sums(static_cast<size_t>(ny)), residual;
  if (kind_ == LossKind::residual) residual.resize(static_cast<size_t>(field));
  double total = 0;
  for (int64_t s = 0; s < b; ++s) {
    const float *us = u.data<float>() + s * field, *ln = log_nu.data<float>() + s * field;
    float* dus = du != nullptr ? du->data<float>() + s * field : nullptr;
    auto nu_row = [=](int64_t j, double* buf) {
      const float* src = ln + j * nx;
      for (int64_t i = 0; i < nx; ++i) buf[i] = std::exp(static_cast<double>(src[i]));
      return static_cast<const double*>(buf);
    };
    auto u_row = [=](int64_t j, double* buf) {
      std::copy(us + j * nx, us + (j + 1) * nx, buf);
      return static_cast<const double*>(buf);
    };
    auto store_scaled = [=](double scale) {
      return [=](int64_t j, const double* row) {
        float* dst = dus + j * nx;
        for (int64_t i = 0; i < nx; ++i) dst[i] = static_cast<float>(scale * row[i]);
      };
    };

    std::fill(row_sums.begin(), row_sums.end(), 0.0);
    if (kind_ == LossKind::energy) {
      if (dus != nullptr)
        sweep<true, true>(g, source_, nu_row, u_row, store_scaled(grad_scale), row_sums.data());
      else
        sweep<true, false>(
            g, source_, nu_row, u_row, [](int64_t, const double*) {}, row_sums.data());
    } else {
      // r = K u - F, kept whole for the second pass; its free-node squares summed per row.
      double *r = residual.data(), *sq = row_sums.data();
      auto store_residual = [=](int64_t j, const double* row) {
        std::copy(row, row + nx, r + j * nx);
        double acc = 0;
        for (int64_t i = 1; i < nx - 1; ++i) acc += row[i] * row[i];
        sq[j] = acc;
      };
      sweep<false, true>(g, source_, nu_row, u_row, store_residual, nullptr);
      if (dus != nullptr) {
        // dJ/du = 2 K^T (m r) = 2 K (m r): K is symmetric; m zeroes the Dirichlet columns.
        auto masked_r_row = [=](int64_t j, double* buf) {
          std::copy(r + j * nx, r + (j + 1) * nx, buf);
          buf[0] = 0;
          buf[nx - 1] = 0;
          return static_cast<const double*>(buf);
        };
        sweep<false, true>(g, 0.0, nu_row, masked_r_row, store_scaled(2 * grad_scale), nullptr);
      }
    }
    double j_s = 0;  // rows in order: the same sum on any thread count
    for (double v : row_sums) j_s += v;
    if (per_sample != nullptr) (*per_sample)[static_cast<size_t>(s)] = j_s;
    total += j_s;
  }
  return total;
}

}  // namespace pdegen

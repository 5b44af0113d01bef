// PoissonLoss on the CPU. One sweep over the element slabs along the outermost axis (element rows in
// 2D, element planes in 3D) serves the energy, its gradient, K u and the residual: the slabs are split
// into one contiguous block per thread; a block keeps its two current coefficient slabs (exp'd once
// per node, not per element) and writes every node slab it owns alone. Each node slab s sums
// (element slab s - 1) + (element slab s) in that order; the two node slabs at a block's edges are
// finished after all blocks, from the partial sums the blocks left. Inside a 3D element plane, node
// row j likewise sums (element row j - 1) + (element row j), and along every element row node i sums
// (element i - 1) + (element i). So there are no races, no atomics, and the result does not depend on
// the thread count. Along a row the shared q1 kernels run on eight elements at a time (Lanes), the
// same source the CUDA kernels use.
#include "physics/poisson_loss.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "physics/q1_kernels.hpp"

namespace pdegen {

namespace {

// Node counts and spacings per axis, x first.
template <int Dim>
struct Grid {
  int64_t n[Dim];
  double h[Dim];
  int64_t nx() const { return n[0]; }
  int64_t slabs() const { return n[Dim - 1]; }
  // Nodes of one slab: a node row in 2D, a node plane in 3D.
  int64_t slab() const {
    int64_t s = 1;
    for (int d = 0; d + 1 < Dim; ++d) s *= n[d];
    return s;
  }
};

template <int Dim>
Grid<Dim> grid_of(std::span<const int64_t> extents) {
  PDEGEN_CHECK(extents.size() == Dim, "a {}D grid needs {} extents, got {}", Dim, Dim, extents.size());
  Grid<Dim> g{};
  for (int d = 0; d < Dim; ++d) {
    g.n[d] = extents[static_cast<size_t>(d)];
    PDEGEN_CHECK(g.n[d] >= 2, "a Q1 grid needs at least 2 nodes per axis, got {} along axis {}", g.n[d], d);
    g.h[d] = 1.0 / static_cast<double>(g.n[d] - 1);
  }
  return g;
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

// The node lines of an element line along x and the per-element outputs. Node line l holds local
// nodes 2 l (at i) and 2 l + 1 (at i + 1).
template <int Dim>
struct ElementLine {
  const double *u[q1::nodes<Dim> / 2], *nu[q1::nodes<Dim> / 2];
  double* energy;
  double* e[q1::nodes<Dim>];
};

// Elements i .. i + lanes - 1 of the line (T = double: one, T = Lanes: eight).
template <int Dim, class T, bool kEnergy, bool kGradient>
inline void elements_at(const ElementLine<Dim>& r, int64_t i, double f, const double* h) {
  constexpr int n = q1::nodes<Dim>;
  T ue[n], nue[n], fq[n], nuq[n], ht[Dim];
  for (int l = 0; l < n / 2; ++l) {
    ue[2 * l] = load<T>(r.u[l] + i);
    ue[2 * l + 1] = load<T>(r.u[l] + i + 1);
    nue[2 * l] = load<T>(r.nu[l] + i);
    nue[2 * l + 1] = load<T>(r.nu[l] + i + 1);
  }
  for (int q = 0; q < n; ++q) fq[q] = T(f);
  for (int d = 0; d < Dim; ++d) ht[d] = T(h[d]);
  q1::gauss_values<Dim>(nue, nuq);
  if constexpr (kEnergy) store(r.energy + i, q1::element_energy<Dim>(ue, nuq, fq, ht));
  if constexpr (kGradient) {
    T ge[n];
    q1::element_gradient<Dim>(ue, nuq, fq, ht, ge);
    for (int a = 0; a < n; ++a) store(r.e[a] + i, ge[a]);
  }
}

// Every element of a line: each one's contributions e[a] to the energy gradient at its local nodes
// (kGradient) and its energy (kEnergy).
template <int Dim, bool kEnergy, bool kGradient>
void element_line(const Grid<Dim>& g, double f, const ElementLine<Dim>& r) {
  const int64_t elements = g.nx() - 1;
  int64_t i = 0;
  for (; i + Lanes::width <= elements; i += Lanes::width)
    elements_at<Dim, Lanes, kEnergy, kGradient>(r, i, f, g.h);
  for (; i < elements; ++i) elements_at<Dim, double, kEnergy, kGradient>(r, i, f, g.h);
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

// A thread's element-line outputs: e[a] and the energies, and one more node row (nx values each).
template <int Dim>
struct LineScratch {
  explicit LineScratch(int64_t nx) : buffer(static_cast<size_t>((q1::nodes<Dim> + 2) * nx)) {
    for (int a = 0; a < q1::nodes<Dim>; ++a) e[a] = buffer.data() + a * nx;
    energy = buffer.data() + q1::nodes<Dim> * nx;
    row = energy + nx;
  }
  std::vector<double> buffer;
  double* e[q1::nodes<Dim>];
  double *energy, *row;
};

// Element slab s between node slabs lo (s) and hi (s + 1): its contributions to the energy gradient
// at the nodes of slab s (written to `bottom`) and s + 1 (`top`) (kGradient), and its energy
// (kEnergy; element rows added in order in 3D).
template <int Dim, bool kEnergy, bool kGradient>
double element_slab(const Grid<Dim>& g, double f, const double* u_lo, const double* u_hi, const double* nu_lo,
                    const double* nu_hi, LineScratch<Dim>& w, double* bottom, double* top) {
  const int64_t nx = g.nx();
  if constexpr (Dim == 2) {
    element_line<2, kEnergy, kGradient>(
        g, f, ElementLine<2>{{u_lo, u_hi}, {nu_lo, nu_hi}, w.energy, {w.e[0], w.e[1], w.e[2], w.e[3]}});
    if constexpr (kGradient) {
      node_sums(nx, w.e[0], w.e[1], bottom);
      node_sums(nx, w.e[2], w.e[3], top);
    }
    return kEnergy ? row_sum(w.energy, nx - 1) : 0.0;
  } else {
    double energy = 0;
    for (int64_t j = 0; j + 1 < g.n[1]; ++j) {
      const int64_t lo = j * nx, hi = lo + nx;
      ElementLine<3> line{{u_lo + lo, u_lo + hi, u_hi + lo, u_hi + hi},
                          {nu_lo + lo, nu_lo + hi, nu_hi + lo, nu_hi + hi},
                          w.energy,
                          {}};
      std::copy(w.e, w.e + 8, line.e);
      element_line<3, kEnergy, kGradient>(g, f, line);
      if constexpr (kEnergy) energy += row_sum(w.energy, nx - 1);
      if constexpr (kGradient) {
        // Local nodes 0..3 lie on the lower node plane, 4..7 on the upper one.
        for (int p = 0; p < 2; ++p) {
          double* out = p == 0 ? bottom : top;
          double* const* e = w.e + 4 * p;
          if (j == 0) {
            node_sums(nx, e[0], e[1], out);
          } else {
            node_sums(nx, e[0], e[1], w.row);
            for (int64_t i = 0; i < nx; ++i) out[lo + i] = out[lo + i] + w.row[i];
          }
          node_sums(nx, e[2], e[3], out + hi);
        }
      }
    }
    return energy;
  }
}

// One pass over a field. Loaders `slab(s, buf)` return node slab s in fp64, either a pointer into
// existing memory or `buf` filled. store_slab(s, values) receives each finished node slab of the
// gradient (kGradient) exactly once; slab_energy[s] the energy of element slab s (kEnergy).
template <int Dim, bool kEnergy, bool kGradient, class NuSlab, class USlab, class StoreSlab>
void sweep(const Grid<Dim>& g, double f, const NuSlab& nu_slab, const USlab& u_slab,
           const StoreSlab& store_slab, double* slab_energy) {
  const int64_t element_slabs = g.slabs() - 1, ns = g.slab();
  const int blocks = static_cast<int>(std::min<int64_t>(omp_get_max_threads(), element_slabs));
  auto block_start = [=](int blk) { return blk * element_slabs / blocks; };
  // Per block: its first node slab (elements above only) and last (elements below only).
  std::vector<double> first(kGradient ? static_cast<size_t>(blocks * ns) : 0), last(first.size());
#pragma omp parallel num_threads(blocks)
  {
    LineScratch<Dim> line_scratch(g.nx());
    std::vector<double> scratch(static_cast<size_t>(7 * ns));
    double* slabs[7];
    for (int r = 0; r < 7; ++r) slabs[r] = scratch.data() + r * ns;
    double *nu_buf[2] = {slabs[0], slabs[1]}, *u_buf[2] = {slabs[2], slabs[3]},
           *top[2] = {slabs[4], slabs[5]};
    double* node_slab = slabs[6];

#pragma omp for schedule(static)
    for (int blk = 0; blk < blocks; ++blk) {
      const int64_t j0 = block_start(blk), j1 = block_start(blk + 1);
      const double* nu_lo = nu_slab(j0, nu_buf[j0 & 1]);
      const double* u_lo = u_slab(j0, u_buf[j0 & 1]);
      const double* top_prev = nullptr;
      for (int64_t j = j0; j < j1; ++j) {
        const double* nu_hi = nu_slab(j + 1, nu_buf[(j + 1) & 1]);
        const double* u_hi = u_slab(j + 1, u_buf[(j + 1) & 1]);
        double* top_now = top[j & 1];
        double* bottom = kGradient && j == j0 ? first.data() + blk * ns : node_slab;
        const double energy = element_slab<Dim, kEnergy, kGradient>(g, f, u_lo, u_hi, nu_lo, nu_hi,
                                                                    line_scratch, bottom, top_now);
        if constexpr (kEnergy) slab_energy[j] = energy;
        if constexpr (kGradient) {
          if (j != j0) {
            for (int64_t i = 0; i < ns; ++i) node_slab[i] = top_prev[i] + node_slab[i];
            store_slab(j, static_cast<const double*>(node_slab));
          }
          top_prev = top_now;
        }
        nu_lo = nu_hi;
        u_lo = u_hi;
      }
      if constexpr (kGradient) std::copy(top_prev, top_prev + ns, last.data() + blk * ns);
    }

    if constexpr (kGradient) {
#pragma omp for schedule(static)
      for (int blk = 0; blk <= blocks; ++blk) {
        if (blk == 0) {
          store_slab(int64_t{0}, static_cast<const double*>(first.data()));
        } else if (blk == blocks) {
          store_slab(g.slabs() - 1, static_cast<const double*>(last.data() + (blocks - 1) * ns));
        } else {
          const double *above = last.data() + (blk - 1) * ns, *below = first.data() + blk * ns;
          for (int64_t i = 0; i < ns; ++i) node_slab[i] = above[i] + below[i];
          store_slab(block_start(blk), static_cast<const double*>(node_slab));
        }
      }
    }
  }
}

void check_field(const Tensor& t, const char* what) {
  PDEGEN_CHECK((t.rank() == 4 || t.rank() == 5) && t.dim(1) == 1 && t.is_plain() && t.dtype() == DType::f32 &&
                   t.device() == Device::cpu,
               "Poisson loss {} must be a plain fp32 CPU [b, 1, Ny, Nx] or [b, 1, Nz, Ny, Nx] tensor, got {}",
               what, t.describe());
}

template <int Dim>
void apply_stiffness_dim(const double* nu_nodal, const double* u, double* Ku,
                         std::span<const int64_t> extents) {
  const Grid<Dim> g = grid_of<Dim>(extents);
  const int64_t ns = g.slab();
  auto nu_slab = [=](int64_t s, double*) { return nu_nodal + s * ns; };
  auto u_slab = [=](int64_t s, double*) { return u + s * ns; };
  auto store = [=](int64_t s, const double* slab) { std::copy(slab, slab + ns, Ku + s * ns); };
  sweep<Dim, false, true>(g, 0.0, nu_slab, u_slab, store, nullptr);
}

template <int Dim>
void load_vector_dim(double f, std::span<const int64_t> extents, double* F) {
  constexpr int n = q1::nodes<Dim>;
  const Grid<Dim> g = grid_of<Dim>(extents);
  double fq[n], fe[n];
  for (int q = 0; q < n; ++q) fq[q] = f;
  q1::element_load<Dim>(fq, g.h, fe);
  const int64_t total = g.slab() * g.slabs();
#pragma omp parallel for schedule(static)
  for (int64_t node = 0; node < total; ++node) {
    int64_t c[Dim];
    for (int64_t d = 0, rest = node; d < Dim; rest /= g.n[d], ++d) c[d] = rest % g.n[d];
    // The node is local node a of the element at c - bits(a), where that element exists.
    double s = 0;
    for (int a = 0; a < n; ++a) {
      bool inside = true;
      for (int d = 0; d < Dim; ++d) inside = inside && ((a >> d) & 1 ? c[d] > 0 : c[d] < g.n[d] - 1);
      if (inside) s += fe[a];
    }
    F[node] = s;
  }
}

}  // namespace

void nodal_coefficient(const float* log_nu, int64_t count, double* nu) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < count; ++i) nu[i] = std::exp(static_cast<double>(log_nu[i]));
}

void apply_stiffness(const double* nu_nodal, const double* u, double* Ku, std::span<const int64_t> extents) {
  if (extents.size() == 3) return apply_stiffness_dim<3>(nu_nodal, u, Ku, extents);
  apply_stiffness_dim<2>(nu_nodal, u, Ku, extents);
}

void load_vector(double f, std::span<const int64_t> extents, double* F) {
  if (extents.size() == 3) return load_vector_dim<3>(f, extents, F);
  load_vector_dim<2>(f, extents, F);
}

double PoissonLoss::evaluate(const Tensor& u, const Tensor& log_nu, double grad_scale, Tensor* du,
                             std::vector<double>* per_sample) const {
#if defined(PDEGEN_HAVE_CUDA)
  if (u.device() == Device::cuda) return evaluate_cuda(u, log_nu, grad_scale, du, per_sample);
#endif
  check_field(u, "field u");
  check_field(log_nu, "coefficient log nu");
  PDEGEN_CHECK(u.shape() == log_nu.shape(), "u is {} but log nu is {}", u.shape().str(),
               log_nu.shape().str());
  if (u.rank() == 5) return evaluate_cpu<3>(u, log_nu, grad_scale, du, per_sample);
  return evaluate_cpu<2>(u, log_nu, grad_scale, du, per_sample);
}

template <int Dim>
double PoissonLoss::evaluate_cpu(const Tensor& u, const Tensor& log_nu, double grad_scale, Tensor* du,
                                 std::vector<double>* per_sample) const {
  int64_t extents[Dim];
  for (int d = 0; d < Dim; ++d) extents[d] = u.dim(u.rank() - 1 - d);
  const Grid<Dim> g = grid_of<Dim>(extents);
  const int64_t b = u.dim(0), nx = g.nx(), ns = g.slab(), slabs = g.slabs(), field = ns * slabs;
  if (du != nullptr && !(du->shape() == u.shape() && du->dtype() == DType::f32 && du->is_plain() &&
                         du->device() == Device::cpu))
    *du = Tensor::empty(u.shape(), DType::f32);
  if (per_sample != nullptr) per_sample->assign(static_cast<size_t>(b), 0.0);

  std::vector<double> slab_sums(static_cast<size_t>(slabs)), residual;
  if (kind_ == LossKind::residual) residual.resize(static_cast<size_t>(field));
  double total = 0;
  for (int64_t s = 0; s < b; ++s) {
    const float *us = u.data<float>() + s * field, *ln = log_nu.data<float>() + s * field;
    float* dus = du != nullptr ? du->data<float>() + s * field : nullptr;
    auto nu_slab = [=](int64_t k, double* buf) {
      const float* src = ln + k * ns;
      for (int64_t i = 0; i < ns; ++i) buf[i] = std::exp(static_cast<double>(src[i]));
      return static_cast<const double*>(buf);
    };
    auto u_slab = [=](int64_t k, double* buf) {
      std::copy(us + k * ns, us + (k + 1) * ns, buf);
      return static_cast<const double*>(buf);
    };
    auto store_scaled = [=](double scale) {
      return [=](int64_t k, const double* slab) {
        float* dst = dus + k * ns;
        for (int64_t i = 0; i < ns; ++i) dst[i] = static_cast<float>(scale * slab[i]);
      };
    };

    std::fill(slab_sums.begin(), slab_sums.end(), 0.0);
    if (kind_ == LossKind::energy) {
      if (dus != nullptr)
        sweep<Dim, true, true>(g, source_, nu_slab, u_slab, store_scaled(grad_scale), slab_sums.data());
      else
        sweep<Dim, true, false>(
            g, source_, nu_slab, u_slab, [](int64_t, const double*) {}, slab_sums.data());
    } else {
      // r = K u - F, kept whole for the second pass; its free-node squares summed per slab, line by
      // line (the free nodes of an x line are all but its first and last).
      double *r = residual.data(), *sq = slab_sums.data();
      auto store_residual = [=](int64_t k, const double* slab) {
        std::copy(slab, slab + ns, r + k * ns);
        double acc = 0;
        for (int64_t line = 0; line < ns; line += nx)
          for (int64_t i = 1; i < nx - 1; ++i) acc += slab[line + i] * slab[line + i];
        sq[k] = acc;
      };
      sweep<Dim, false, true>(g, source_, nu_slab, u_slab, store_residual, nullptr);
      if (dus != nullptr) {
        // dJ/du = 2 K^T (m r) = 2 K (m r): K is symmetric; m zeroes the Dirichlet nodes.
        auto masked_r_slab = [=](int64_t k, double* buf) {
          std::copy(r + k * ns, r + (k + 1) * ns, buf);
          for (int64_t line = 0; line < ns; line += nx) {
            buf[line] = 0;
            buf[line + nx - 1] = 0;
          }
          return static_cast<const double*>(buf);
        };
        sweep<Dim, false, true>(g, 0.0, nu_slab, masked_r_slab, store_scaled(2 * grad_scale), nullptr);
      }
    }
    double j_s = 0;  // slabs in order: the same sum on any thread count
    for (double v : slab_sums) j_s += v;
    if (per_sample != nullptr) (*per_sample)[static_cast<size_t>(s)] = j_s;
    total += j_s;
  }
  return total;
}

}  // namespace pdegen

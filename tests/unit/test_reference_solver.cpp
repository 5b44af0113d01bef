// The poisson2d and poisson3d reference solver: its answers against the assembled Q1 system and
// against exact solutions, its multigrid against dense linear algebra, its cost against plain CG.
// The helpers are dimension-generic and share only the Q1 element functions with the solver.
#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <numbers>
#include <string>
#include <utility>
#include <vector>

#include "physics/dense_cholesky.hpp"
#include "physics/grid_transfer.hpp"
#include "physics/multigrid.hpp"
#include "physics/poisson_loss.hpp"
#include "physics/q1_kernels.hpp"
#include "physics/reference_solver.hpp"
#include "testing.hpp"

using namespace pdegen;
using namespace pdegen::physics;
using testing::Vec;

namespace {

constexpr double pi = std::numbers::pi;

template <int Dim>
Index<Dim> cube_nodes(int n) {
  Index<Dim> i;
  i.fill(n);
  return i;
}

template <int Dim>
int64_t nodes_of(int n) {
  int64_t c = 1;
  for (int d = 0; d < Dim; ++d) c *= n;
  return c;
}

// The node of a flat index (x fastest) and back.
template <int Dim>
Index<Dim> node_of(const GridLayout<Dim>& g, int64_t flat) {
  Index<Dim> p;
  for (int d = 0; d < Dim; ++d) {
    p[d] = static_cast<int>(flat % g.n[d]);
    flat /= g.n[d];
  }
  return p;
}

template <int Dim>
int64_t flat_of(const GridLayout<Dim>& g, const Index<Dim>& p) {
  int64_t f = 0;
  for (int d = Dim - 1; d >= 0; --d) f = f * g.n[d] + p[d];
  return f;
}

// Node coordinates of a flat index on the n^Dim grid of the unit square or cube.
template <int Dim>
std::array<double, Dim> coordinates(int n, int64_t flat) {
  std::array<double, Dim> x;
  for (int d = 0; d < Dim; ++d) {
    x[static_cast<size_t>(d)] = double(flat % n) / (n - 1);
    flat /= n;
  }
  return x;
}

// A smooth random log nu with max |log nu| = amplitude (amplitude 3: contrast e^6, the KL field's
// range at sigma = 1): a few cosine modes with random weights.
template <int Dim>
Vec smooth_log_nu(int n, double amplitude, uint64_t stream) {
  constexpr int modes = Dim == 2 ? 12 : 18;
  const Vec w = testing::random_vec(modes, stream);
  Vec v(static_cast<size_t>(nodes_of<Dim>(n)));
  double peak = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    const auto c = coordinates<Dim>(n, static_cast<int64_t>(i));
    double s = 0;
    for (int k = 0; k < modes; ++k) {
      if constexpr (Dim == 2) {
        const int kx = k % 4, ky = k / 4;
        s += w[static_cast<size_t>(k)] * std::cos(pi * (kx * c[0] + 0.3 * k)) *
             std::cos(pi * (ky * c[1] + 0.7 * k)) / (1.0 + kx + ky);
      } else {
        const int kx = k % 3, ky = k / 3 % 3, kz = k / 9;
        s += w[static_cast<size_t>(k)] * std::cos(pi * (kx * c[0] + 0.3 * k)) *
             std::cos(pi * (ky * c[1] + 0.7 * k)) * std::cos(pi * (kz * c[2] + 0.45 * k)) /
             (1.0 + kx + ky + kz);
      }
    }
    v[i] = s;
    peak = std::max(peak, std::abs(s));
  }
  for (double& x : v) x *= amplitude / peak;
  return v;
}

// f(e) for the first node e of every element of the n^Dim grid.
template <int Dim, class F>
void for_each_element(int n, F&& f) {
  long e[Dim] = {};
  for (;;) {
    f(static_cast<const long*>(e));
    int d = 0;
    while (d < Dim && e[d] == n - 2) e[d++] = 0;
    if (d == Dim) return;
    ++e[d];
  }
}

// One element's nodes, its K_e for nodal nu = exp(log nu) and its F_e for nodal f.
template <int Dim>
struct Element {
  static constexpr int N = q1::nodes<Dim>;
  long idx[N];
  double k[N * N], load[N];

  Element(int n, const long* e, const Vec& log_nu, const Vec* f) {
    const long extents[3] = {n, n, n};
    q1::element_nodes<Dim>(e, extents, idx);
    double h[Dim];
    for (double& v : h) v = 1.0 / (n - 1);
    double nu[N], nu_q[N], fa[N], f_q[N];
    for (int a = 0; a < N; ++a) nu[a] = std::exp(log_nu[static_cast<size_t>(idx[a])]);
    q1::gauss_values<Dim>(nu, nu_q);
    q1::element_matrix<Dim>(nu_q, h, k);
    for (int a = 0; a < N; ++a) fa[a] = f != nullptr ? (*f)[static_cast<size_t>(idx[a])] : 0.0;
    q1::gauss_values<Dim>(fa, f_q);
    q1::element_load<Dim>(f_q, h, load);
  }
};

// The Q1 system assembled here independently of the solver, from q1::element_matrix/element_load:
// K u and F for the full grid (no elimination).
template <int Dim>
Vec apply_k(int n, const Vec& log_nu, const Vec& u) {
  constexpr int N = q1::nodes<Dim>;
  Vec ku(u.size(), 0.0);
  for_each_element<Dim>(n, [&](const long* e) {
    const Element<Dim> el(n, e, log_nu, nullptr);
    for (int a = 0; a < N; ++a)
      for (int b = 0; b < N; ++b)
        ku[static_cast<size_t>(el.idx[a])] += el.k[a * N + b] * u[static_cast<size_t>(el.idx[b])];
  });
  return ku;
}

template <int Dim>
Vec load_f(int n, const Vec& f) {
  const Vec zero(f.size(), 0.0);
  Vec load(f.size(), 0.0);
  for_each_element<Dim>(n, [&](const long* e) {
    const Element<Dim> el(n, e, zero, &f);
    for (int a = 0; a < q1::nodes<Dim>; ++a) load[static_cast<size_t>(el.idx[a])] += el.load[a];
  });
  return load;
}

// ||F - K u|| / ||F - K u_lift|| over the free nodes (x != 0, 1).
template <int Dim>
double relative_residual(int n, const Vec& log_nu, const Vec& f, const Vec& u) {
  Vec lift(u.size(), 0.0);
  for (size_t i = 0; i < u.size(); i += static_cast<size_t>(n)) lift[i] = 1;
  const Vec load = load_f<Dim>(n, f), ku = apply_k<Dim>(n, log_nu, u), klift = apply_k<Dim>(n, log_nu, lift);
  double num = 0, den = 0;
  for (size_t i = 0; i < u.size(); ++i) {
    const auto ix = static_cast<int>(i % static_cast<size_t>(n));
    if (ix == 0 || ix == n - 1) continue;
    num += (load[i] - ku[i]) * (load[i] - ku[i]);
    den += (load[i] - klift[i]) * (load[i] - klift[i]);
  }
  return std::sqrt(num / den);
}

// The eliminated Q1 operator written into a stencil (the test's own assembly, for multigrid tests).
template <int Dim>
void fill_q1_operator(StencilOperator<Dim>& a, const Vec& log_nu) {
  constexpr int N = q1::nodes<Dim>;
  const GridLayout<Dim>& g = a.layout();
  const int n = g.nx();
  a.set_zero();
  for_each_element<Dim>(n, [&](const long* e) {
    const Element<Dim> el(n, e, log_nu, nullptr);
    for (int p = 0; p < N; ++p)
      for (int q = 0; q < N; ++q) {
        Index<Dim> pp, d;
        for (int ax = 0; ax < Dim; ++ax) {
          pp[ax] = static_cast<int>(e[ax]) + ((p >> ax) & 1);
          d[ax] = ((q >> ax) & 1) - ((p >> ax) & 1);
        }
        const int qx = pp[0] + d[0];
        const bool free = pp[0] != 0 && pp[0] != n - 1 && qx != 0 && qx != n - 1;
        const int term = a.term_of(d);
        if (free && term >= 0) a.coefficients(term)(pp) += el.k[p * N + q];
      }
  });
  for (int64_t i = 0; i < g.nodes(); ++i) {
    const Index<Dim> p = node_of(g, i);
    if (p[0] == 0 || p[0] == n - 1) a.coefficients(0)(p) = 1;
  }
}

// A random symmetric stencil operator with the Dirichlet structure (identity rows on x = 0, 1).
template <int Dim>
StencilOperator<Dim> random_operator(const GridLayout<Dim>& g, int radius, uint64_t stream) {
  StencilOperator<Dim> a(g, radius);
  const Vec v = testing::random_vec(static_cast<size_t>(a.terms() * g.nodes()), stream, 0.1, 1);
  size_t next = 0;
  for (int k = 0; k < a.terms(); ++k)
    for (int64_t i = 0; i < g.nodes(); ++i) {
      const Index<Dim> p = node_of(g, i);
      const bool dirichlet = p[0] == 0 || p[0] == g.nx() - 1;
      bool free = !dirichlet;
      for (int ax = 0; ax < Dim; ++ax) {
        const int j = p[ax] + a.offset(k)[ax], end = ax == 0 ? 1 : 0;  // x: the neighbour must be free too
        free = free && j >= end && j < g.n[ax] - end;
      }
      const double value = v[next++];
      if (k == 0)
        a.coefficients(0)(p) = dirichlet ? 1 : 10 + value;
      else if (free)
        a.coefficients(k)(p) = -value;
    }
  return a;
}

template <int Dim>
Field<Dim> field_from(const GridLayout<Dim>& g, const Vec& v) {
  Field<Dim> f(g);
  for (int64_t i = 0; i < g.nodes(); ++i) f(node_of(g, i)) = v[static_cast<size_t>(i)];
  return f;
}

template <int Dim>
Vec values_of(const Field<Dim>& f) {
  const GridLayout<Dim>& g = f.layout();
  Vec v(static_cast<size_t>(g.nodes()));
  for (int64_t i = 0; i < g.nodes(); ++i) v[static_cast<size_t>(i)] = f(node_of(g, i));
  return v;
}

// The hat of coarse node j (of nc on [0, 1]) at fine node i (of nf).
double hat(int i, int nf, int j, int nc) {
  const double x = double(i) / (nf - 1), xc = double(j) / (nc - 1), hc = 1.0 / (nc - 1);
  return std::max(0.0, 1 - std::abs(x - xc) / hc);
}

// Calls f(i, j, P(i, j)) for every fine node i and coarse node j whose P entry is nonzero, P from
// the definition: the product over the axes of the coarse hats at the fine nodes, Dirichlet columns
// (x = 0, 1) dropped.
template <int Dim, class F>
void for_each_hat_pair(const GridLayout<Dim>& fine, const GridLayout<Dim>& coarse, F&& f) {
  std::array<Vec, Dim> hats;  // per axis: [i * nc + j]
  for (int d = 0; d < Dim; ++d) {
    const int nf = fine.n[d], nc = coarse.n[d];
    Vec& h = hats[static_cast<size_t>(d)];
    h.assign(static_cast<size_t>(nf * nc), 0.0);
    for (int i = 0; i < nf; ++i)
      for (int j = d == 0 ? 1 : 0; j < (d == 0 ? nc - 1 : nc); ++j)
        h[static_cast<size_t>(i * nc + j)] = hat(i, nf, j, nc);
  }
  std::vector<Index<Dim>> coarse_nodes;
  for (int64_t j = 0; j < coarse.nodes(); ++j) coarse_nodes.push_back(node_of(coarse, j));
  for (int64_t i = 0; i < fine.nodes(); ++i) {
    const Index<Dim> pf = node_of(fine, i);
    for (int64_t j = 0; j < coarse.nodes(); ++j) {
      const Index<Dim>& pj = coarse_nodes[static_cast<size_t>(j)];
      double w = 1;
      for (int d = 0; d < Dim && w != 0; ++d)
        w *= hats[static_cast<size_t>(d)][static_cast<size_t>(pf[d] * coarse.n[d] + pj[d])];
      if (w != 0) f(i, j, w);
    }
  }
}

// Dense prolongation from the definition, row-major, fine nodes x coarse nodes.
template <int Dim>
Vec dense_prolongation(const GridLayout<Dim>& fine, const GridLayout<Dim>& coarse) {
  const auto nc = static_cast<size_t>(coarse.nodes());
  Vec p(static_cast<size_t>(fine.nodes()) * nc, 0.0);
  for_each_hat_pair(fine, coarse, [&](int64_t i, int64_t j, double w) {
    p[static_cast<size_t>(i) * nc + static_cast<size_t>(j)] = w;
  });
  return p;
}

// The coarse-grid offsets [-2, 2]^Dim numbered x fastest, and the full coarse stencils indexed by
// node * span + offset.
template <int Dim>
constexpr int full_span = Dim == 2 ? 25 : 125;

template <int Dim>
int full_offset_index(const Index<Dim>& o) {
  int k = 0;
  for (int d = Dim - 1; d >= 0; --d) k = k * 5 + o[d] + 2;
  return k;
}

// P^T A P from the definition, summed over fine nodes i, their stencil neighbours k and the coarse
// hats nonzero at i and at k, into full 5^Dim coarse stencils.
template <int Dim>
Vec sparse_galerkin(const StencilOperator<Dim>& a, const GridLayout<Dim>& coarse) {
  const GridLayout<Dim>& fine = a.layout();
  using Parents = std::vector<std::pair<int, double>>;
  auto parents = [](int nf, int nc, bool drop_ends) {  // per fine node: (coarse node, hat value)
    std::vector<Parents> all(static_cast<size_t>(nf));
    const double hc = 1.0 / (nc - 1);
    for (int i = 0; i < nf; ++i) {
      const double x = double(i) / (nf - 1);
      for (int j = static_cast<int>(x / hc) - 1; j <= static_cast<int>(x / hc) + 2; ++j) {
        if (j < 0 || j >= nc || (drop_ends && (j == 0 || j == nc - 1))) continue;
        const double w = 1 - std::abs(x - j * hc) / hc;
        if (w > 1e-12) all[static_cast<size_t>(i)].push_back({j, w});
      }
    }
    return all;
  };
  std::array<std::vector<Parents>, Dim> par;
  for (int d = 0; d < Dim; ++d) par[static_cast<size_t>(d)] = parents(fine.n[d], coarse.n[d], d == 0);
  Vec ac(static_cast<size_t>(coarse.nodes() * full_span<Dim>), 0.0);
  bool in_reach = true;
  for (int64_t i = 0; i < fine.nodes(); ++i) {
    const Index<Dim> pf = node_of(fine, i);
    for_each_offset<Dim>(a.radius(), [&](const Index<Dim>& d) {
      const Parents* lists[2 * Dim];  // the parents of i, then of k = i + d, per axis
      for (int ax = 0; ax < Dim; ++ax) {
        const int k = pf[ax] + d[ax];
        if (k < 0 || k >= fine.n[ax]) return;
        lists[ax] = &par[static_cast<size_t>(ax)][static_cast<size_t>(pf[ax])];
        lists[Dim + ax] = &par[static_cast<size_t>(ax)][static_cast<size_t>(k)];
      }
      const double v = a.entry(pf, d);
      if (v == 0) return;
      for (const Parents* l : lists)
        if (l->empty()) return;
      std::array<size_t, 2 * Dim> c{};
      for (;;) {  // every choice of one parent per list
        Index<Dim> j, o;
        double w = v;
        for (int ax = 0; ax < Dim; ++ax) {
          const auto& [jc, wj] = (*lists[ax])[c[static_cast<size_t>(ax)]];
          const auto& [mc, wm] = (*lists[Dim + ax])[c[static_cast<size_t>(Dim + ax)]];
          j[ax] = jc;
          o[ax] = mc - jc;
          w *= wj * wm;
        }
        if (std::all_of(o.begin(), o.end(), [](int x) { return std::abs(x) <= 2; }))
          ac[static_cast<size_t>(flat_of<Dim>(coarse, j) * full_span<Dim> + full_offset_index<Dim>(o))] += w;
        else
          in_reach = false;
        size_t l = 0;
        while (l < 2 * Dim && ++c[l] == lists[l]->size()) c[l++] = 0;
        if (l == 2 * Dim) break;
      }
    });
  }
  CHECK(in_reach);
  for (int64_t j = 0; j < coarse.nodes(); ++j) {
    const Index<Dim> pj = node_of(coarse, j);
    if (pj[0] == 0 || pj[0] == coarse.nx() - 1)
      ac[static_cast<size_t>(j * full_span<Dim> + full_offset_index<Dim>(Index<Dim>{}))] = 1;
  }
  return ac;
}

// One solve on one thread unless told otherwise: solves are bitwise the same on any thread count
// (tested below), and single-threaded tests do not stall when ctest runs binaries side by side.
template <int Dim = 2>
Vec solve(int n, const Vec& log_nu, double f, const SolverOptions& options, SolveReport* report = nullptr,
          bool threads = false) {
  Vec u(static_cast<size_t>(nodes_of<Dim>(n)));
  PoissonSolver<Dim> solver(n, options, threads);
  const SolveReport r = solver.solve(log_nu.data(), Source::constant(f), u.data());
  if (report != nullptr) *report = r;
  return u;
}

// ---- building-block checks, for any dimension ----------------------------------------------------

template <int Dim>
void check_stencil_product(const GridLayout<Dim>& g, int radius) {
  const StencilOperator<Dim> a = random_operator(g, radius, 1);
  const Vec dense = a.to_dense();
  const auto nodes = static_cast<size_t>(g.nodes());
  for (size_t i = 0; i < nodes; ++i)
    for (size_t j = 0; j < i; ++j) REQUIRE(dense[i * nodes + j] == dense[j * nodes + i]);
  const Vec x = testing::random_vec(nodes, 2);
  Vec expect(nodes, 0.0);
  for (size_t i = 0; i < nodes; ++i)
    for (size_t j = 0; j < nodes; ++j) expect[i] += dense[i * nodes + j] * x[j];
  Field<Dim> xf = field_from(g, x), yf(g);
  a.apply(xf, yf, false);
  CHECK(testing::rel_max_error(values_of(yf), expect) < 1e-14);
  Field<Dim> zf = field_from(g, x);
  a.subtract_apply(xf, zf, true);
  Vec expect_sub = x;
  for (size_t i = 0; i < nodes; ++i) expect_sub[i] -= expect[i];
  CHECK(testing::rel_max_error(values_of(zf), expect_sub) < 1e-14);
}

// The coarse grid of the multigrid rule: each axis of m cells gets (m + 1) / 2 cells.
template <int Dim>
GridLayout<Dim> coarsened(const GridLayout<Dim>& fine) {
  Index<Dim> n;
  for (int d = 0; d < Dim; ++d) n[d] = fine.n[d] / 2 + 1;
  return GridLayout<Dim>(n);
}

template <int Dim>
bool nests(const GridLayout<Dim>& fine, const GridLayout<Dim>& coarse) {
  for (int d = 0; d < Dim; ++d)
    if (fine.n[d] - 1 != 2 * (coarse.n[d] - 1)) return false;
  return true;
}

template <int Dim>
void check_transfer(const GridLayout<Dim>& fine, const GridLayout<Dim>& coarse) {
  GridTransfer<Dim> t(fine, coarse);
  CHECK(t.nested() == nests(fine, coarse));
  const auto nf = static_cast<size_t>(fine.nodes()), nc = static_cast<size_t>(coarse.nodes());
  const Vec ec = testing::random_vec(nc, 3), rf = testing::random_vec(nf, 4);
  Vec pe(nf, 0.0), ptr(nc, 0.0);
  for_each_hat_pair(fine, coarse, [&](int64_t i, int64_t j, double w) {
    pe[static_cast<size_t>(i)] += w * ec[static_cast<size_t>(j)];
    ptr[static_cast<size_t>(j)] += w * rf[static_cast<size_t>(i)];
  });
  Field<Dim> fine_field(fine), coarse_field(coarse);
  t.prolong_add(field_from(coarse, ec), fine_field, true);
  CHECK(testing::rel_max_error(values_of(fine_field), pe) < 1e-14);
  t.restrict_to(field_from(fine, rf), coarse_field, true);
  CHECK(testing::rel_max_error(values_of(coarse_field), ptr) < 1e-14);
}

template <int Dim>
void check_dense_galerkin(const GridLayout<Dim>& fine, const GridLayout<Dim>& coarse, int radius) {
  const StencilOperator<Dim> a = random_operator(fine, radius, 5);
  const StencilOperator<Dim> ac = GridTransfer<Dim>(fine, coarse).galerkin(a, true);
  CHECK(ac.radius() == ((radius == 1 && nests(fine, coarse)) ? 1 : 2));
  const Vec p = dense_prolongation(fine, coarse), ad = a.to_dense();
  const auto nf = static_cast<size_t>(fine.nodes()), nc = static_cast<size_t>(coarse.nodes());
  Vec ap(nf * nc, 0.0), expect(nc * nc, 0.0);
  for (size_t i = 0; i < nf; ++i)
    for (size_t k = 0; k < nf; ++k)
      if (ad[i * nf + k] != 0)
        for (size_t j = 0; j < nc; ++j) ap[i * nc + j] += ad[i * nf + k] * p[k * nc + j];
  for (size_t i = 0; i < nf; ++i)
    for (size_t j = 0; j < nc; ++j)
      if (p[i * nc + j] != 0)
        for (size_t m = 0; m < nc; ++m) expect[j * nc + m] += p[i * nc + j] * ap[i * nc + m];
  for (size_t d = 0; d < nc; ++d) {
    const int jx = node_of(coarse, static_cast<int64_t>(d))[0];
    if (jx == 0 || jx == coarse.nx() - 1) expect[d * nc + d] = 1;
  }
  CHECK(testing::rel_max_error(ac.to_dense(), expect) < 1e-13);
}

template <int Dim>
void check_sparse_galerkin(const GridLayout<Dim>& fine, const GridLayout<Dim>& coarse, int radius) {
  const StencilOperator<Dim> a = random_operator(fine, radius, 6);
  const StencilOperator<Dim> ac = GridTransfer<Dim>(fine, coarse).galerkin(a, true);
  const Vec expect = sparse_galerkin(a, coarse);
  Vec got(expect.size());
  for (int64_t j = 0; j < coarse.nodes(); ++j) {
    const Index<Dim> pj = node_of(coarse, j);
    for_each_offset<Dim>(2, [&](const Index<Dim>& o) {
      const bool within = std::all_of(o.begin(), o.end(), [&](int x) { return std::abs(x) <= ac.radius(); });
      got[static_cast<size_t>(j * full_span<Dim> + full_offset_index<Dim>(o))] =
          within ? ac.entry(pj, o) : 0.0;
    });
  }
  CHECK(testing::rel_max_error(got, expect) < 1e-13);
}

template <int Dim>
void check_vcycle_spd(int n, int degree) {
  MultigridOptions options;
  options.smoothing_degree = degree;
  Multigrid<Dim> mg(cube_nodes<Dim>(n), true, options);
  fill_q1_operator(mg.fine_operator(), smooth_log_nu<Dim>(n, 3, 6));
  mg.setup();
  const GridLayout<Dim> g = mg.fine_operator().layout();
  const auto nodes = static_cast<size_t>(g.nodes());
  Vec v1 = testing::random_vec(nodes, 7), v2 = testing::random_vec(nodes, 8);
  for (size_t i = 0; i < nodes; i += static_cast<size_t>(n)) {  // the Dirichlet rows carry no residual
    v1[i] = v1[i + static_cast<size_t>(n) - 1] = 0;
    v2[i] = v2[i + static_cast<size_t>(n) - 1] = 0;
  }
  const Field<Dim> r1 = field_from(g, v1), r2 = field_from(g, v2);
  Field<Dim> z1(g), z2(g);
  mg.apply(r1, z1);
  mg.apply(r2, z2);
  const double b12 = dot(z1, r2, false), b21 = dot(r1, z2, false);
  CHECK(std::abs(b12 - b21) <= 1e-12 * std::sqrt(dot(z1, r1, false) * dot(z2, r2, false)));
  CHECK(dot(z1, r1, false) > 0);
  CHECK(dot(z2, r2, false) > 0);
}

template <int Dim>
std::vector<int> level_sizes(const Index<Dim>& nodes, int axis) {
  Multigrid<Dim> mg(nodes, false);
  std::vector<int> s;
  for (int l = 0; l < mg.levels(); ++l) s.push_back(mg.level_layout(l).n[axis]);
  return s;
}

}  // namespace

// ---- building blocks ---------------------------------------------------------------------------

TEST_CASE("a stencil operator's product equals its dense matrix, which is symmetric") {
  for (int radius : {1, 2}) {
    CAPTURE(radius);
    check_stencil_product(GridLayout<2>({9, 7}), radius);
  }
}

TEST_CASE("a 3D stencil operator's product equals its dense matrix, which is symmetric") {
  for (int radius : {1, 2}) {
    CAPTURE(radius);
    const StencilOperator<3> a(GridLayout<3>({5, 4, 6}), radius);
    CHECK(a.terms() == (radius == 1 ? 14 : 63));
    check_stencil_product(GridLayout<3>({5, 4, 6}), radius);
    check_stencil_product(GridLayout<3>({7, 6, 5}), radius);
  }
}

TEST_CASE(
    "prolongation is bilinear interpolation between non-nested and nested grids, restriction its transpose") {
  for (const auto& [fine_n, coarse_n] : {std::pair{10, 6}, std::pair{9, 5}, std::pair{64, 33}}) {
    CAPTURE(fine_n);
    const int cells_y = fine_n - 2;  // a non-square fine grid: the other axis coarsens on its own
    check_transfer(GridLayout<2>({fine_n, cells_y + 1}), GridLayout<2>({coarse_n, (cells_y + 1) / 2 + 1}));
  }
}

TEST_CASE("3D prolongation is trilinear interpolation, nested or not per axis, restriction its transpose") {
  // Axes of even and odd cell counts in every position; the last grid is large enough for the
  // transfer to run its loops over an OpenMP team.
  for (const Index<3>& n :
       {Index<3>{9, 7, 8}, Index<3>{10, 9, 7}, Index<3>{9, 9, 9}, Index<3>{8, 6, 8}, Index<3>{33, 30, 33}}) {
    CAPTURE(n[0]);
    CAPTURE(n[1]);
    CAPTURE(n[2]);
    const GridLayout<3> fine(n);
    check_transfer(fine, coarsened(fine));
  }
  CHECK(coarsened(GridLayout<3>({9, 7, 8})).n == Index<3>{5, 4, 5});
}

TEST_CASE("the Galerkin coarse operator equals P^T A P formed densely, with identity Dirichlet rows") {
  for (const auto& [fine_n, coarse_n] : {std::pair{12, 7}, std::pair{13, 7}}) {
    for (int radius : {1, 2}) {
      CAPTURE(fine_n);
      CAPTURE(radius);
      check_dense_galerkin(GridLayout<2>::cube(fine_n), GridLayout<2>::cube(coarse_n), radius);
    }
  }
}

TEST_CASE("the 3D Galerkin coarse operator equals P^T A P formed densely, with identity Dirichlet rows") {
  // Nested (radius 1 stays radius 1), not nested, and nested along some axes only.
  for (const Index<3>& n : {Index<3>{9, 7, 9}, Index<3>{8, 6, 8}, Index<3>{9, 6, 8}}) {
    for (int radius : {1, 2}) {
      CAPTURE(n[0]);
      CAPTURE(n[1]);
      CAPTURE(n[2]);
      CAPTURE(radius);
      const GridLayout<3> fine(n);
      check_dense_galerkin(fine, coarsened(fine), radius);
    }
  }
}

TEST_CASE("the Galerkin coarse operator of large grids equals P^T A P summed from its definition") {
  // More than 64 coarse rows, so the product's row blocks hold several rows and share fine rows.
  for (const auto& [fine_n, coarse_n] : {std::pair{260, 131}, std::pair{257, 129}}) {
    for (int radius : {1, 2}) {
      CAPTURE(fine_n);
      CAPTURE(radius);
      check_sparse_galerkin(GridLayout<2>::cube(fine_n), GridLayout<2>::cube(coarse_n), radius);
    }
  }
}

TEST_CASE("the 3D Galerkin coarse operator of large grids equals P^T A P summed from its definition") {
  // More than 64 coarse planes, so the product's plane blocks hold several planes and share fine
  // planes; the first grid's coarse level is large enough to run over an OpenMP team.
  for (const auto& [n, radius] : {std::pair{Index<3>{33, 31, 130}, 1}, std::pair{Index<3>{9, 8, 131}, 2},
                                  std::pair{Index<3>{10, 7, 130}, 2}}) {
    CAPTURE(n[0]);
    CAPTURE(n[1]);
    CAPTURE(n[2]);
    CAPTURE(radius);
    const GridLayout<3> fine(n);
    check_sparse_galerkin(fine, coarsened(fine), radius);
  }
}

TEST_CASE("the coarsest-level Cholesky solves banded symmetric positive definite systems to round-off") {
  // Diagonally dominant with bandwidth 7 < n, so the first rows (fewer than a band of predecessors)
  // and the interior rows are both exercised.
  const int n = 60, band = 7;
  const auto un = static_cast<size_t>(n);
  const Vec r = testing::random_vec(un * un, 30, 0, 1);
  Vec a(un * un, 0.0);
  for (size_t i = 0; i < un; ++i)
    for (size_t j = 0; j < i; ++j)
      if (i - j <= band) a[i * un + j] = a[j * un + i] = -r[i * un + j];
  for (size_t i = 0; i < un; ++i) {
    double off = 0;
    for (size_t j = 0; j < un; ++j) off += std::abs(a[i * un + j]);
    a[i * un + i] = 0.5 + off;
  }
  const Vec b = testing::random_vec(un, 31);
  Vec x(un);
  DenseCholesky(a, n).solve(b.data(), x.data());
  Vec ax(un, 0.0);
  for (size_t i = 0; i < un; ++i)
    for (size_t j = 0; j < un; ++j) ax[i] += a[i * un + j] * x[j];
  CHECK(testing::rel_max_error(ax, b) < 1e-13);
}

TEST_CASE("coarse grids halve the cell count, rounding up, down to a few hundred nodes") {
  auto sizes = [](int n) { return level_sizes<2>({n, n}, 0); };
  CHECK(sizes(64) == std::vector<int>{64, 33, 17});
  CHECK(sizes(65) == std::vector<int>{65, 33, 17});
  CHECK(sizes(1024) == std::vector<int>{1024, 513, 257, 129, 65, 33, 17});
  CHECK(sizes(17) == std::vector<int>{17});
}

TEST_CASE("3D coarse grids halve the cell count per axis, rounding up, down to a few hundred nodes") {
  auto sizes = [](int n) { return level_sizes<3>(cube_nodes<3>(n), 0); };
  CHECK(sizes(64) == std::vector<int>{64, 33, 17, 9, 5});
  CHECK(sizes(65) == std::vector<int>{65, 33, 17, 9, 5});
  CHECK(sizes(100) == std::vector<int>{100, 51, 26, 14, 8, 5});
  CHECK(sizes(8) == std::vector<int>{8, 5});  // 512 nodes > 400, 7 cells -> 4
  CHECK(sizes(7) == std::vector<int>{7});     // 343 nodes
  // Each axis on its own; coarsening stops once an axis has fewer than 4 cells.
  const Index<3> box{9, 7, 8};
  CHECK(level_sizes<3>(box, 0) == std::vector<int>{9, 5});
  CHECK(level_sizes<3>(box, 1) == std::vector<int>{7, 4});
  CHECK(level_sizes<3>(box, 2) == std::vector<int>{8, 5});
  const Index<3> bar{129, 17, 17};  // 37k nodes -> 5265 -> 825 -> 153, y and z stop at 3 nodes
  CHECK(level_sizes<3>(bar, 0) == std::vector<int>{129, 65, 33, 17});
  CHECK(level_sizes<3>(bar, 2) == std::vector<int>{17, 9, 5, 3});
  const Index<3> slab{5, 33, 40};
  CHECK(level_sizes<3>(slab, 0) == std::vector<int>{5, 3});
  CHECK(level_sizes<3>(slab, 1) == std::vector<int>{33, 17});
  CHECK(level_sizes<3>(slab, 2) == std::vector<int>{40, 21});
}

TEST_CASE("the multigrid V-cycle is a symmetric positive definite operator") {
  for (const auto& [n, degree] : {std::pair{64, 1}, std::pair{65, 1}, std::pair{64, 3}}) {
    CAPTURE(n);
    CAPTURE(degree);
    check_vcycle_spd<2>(n, degree);
  }
}

TEST_CASE("the 3D multigrid V-cycle is a symmetric positive definite operator") {
  // 32^3: not nested, radius-2 coarse operators; 33^3: nested, and its finest level runs threaded.
  for (const auto& [n, degree] : {std::pair{16, 1}, std::pair{17, 1}, std::pair{32, 1}, std::pair{33, 3}}) {
    CAPTURE(n);
    CAPTURE(degree);
    check_vcycle_spd<3>(n, degree);
  }
}

// ---- the solver --------------------------------------------------------------------------------

TEST_CASE("u = 1 - x is reproduced to round-off when nu varies only with y") {
  const int n = 33;
  Vec log_nu(static_cast<size_t>(n) * n);
  for (int iy = 0; iy < n; ++iy)
    for (int ix = 0; ix < n; ++ix)
      log_nu[static_cast<size_t>(iy * n + ix)] = 2 * std::sin(3.0 * iy / (n - 1));
  Vec u(log_nu.size());
  solve_poisson<2>(log_nu.data(), Source::constant(0), n, u.data());  // the one-call form
  Vec exact(u.size());
  for (int iy = 0; iy < n; ++iy)
    for (int ix = 0; ix < n; ++ix) exact[static_cast<size_t>(iy * n + ix)] = 1 - double(ix) / (n - 1);
  CHECK(testing::rel_max_error(u, exact) < 1e-9);
}

TEST_CASE("3D: u = 1 - x is reproduced to round-off when nu varies only with y and z") {
  for (int n : {17, 24}) {
    CAPTURE(n);
    const auto nodes = static_cast<size_t>(nodes_of<3>(n));
    Vec log_nu(nodes), exact(nodes), u(nodes);
    for (size_t i = 0; i < nodes; ++i) {
      const auto [x, y, z] = coordinates<3>(n, static_cast<int64_t>(i));
      log_nu[i] = 2 * std::sin(3.0 * y) * std::cos(2.0 * z) + z;
      exact[i] = 1 - x;
    }
    solve_poisson<3>(log_nu.data(), Source::constant(0), n, u.data());
    CHECK(testing::rel_max_error(u, exact) < 1e-9);
  }
}

TEST_CASE(
    "the residual of the returned solution, recomputed by independent Q1 assembly, is <= 1e-10 relative") {
  for (int n : {64, 65}) {
    for (double f : {0.0, 3.0}) {
      CAPTURE(n);
      CAPTURE(f);
      const Vec log_nu = smooth_log_nu<2>(n, 3, 9);
      SolveReport report;
      const Vec u = solve(n, log_nu, f, {}, &report);
      const double rel = relative_residual<2>(n, log_nu, Vec(u.size(), f), u);
      MESSAGE("n = " << n << ", f = " << f << ": " << report.iterations << " iterations, relative residual "
                     << rel << " (solver says " << report.relative_residual << ")");
      CHECK(rel <= 1e-10);
      CHECK(std::abs(rel - report.relative_residual) <= 1e-3 * rel + 1e-15);
    }
  }
}

TEST_CASE(
    "3D: the residual of the returned solution, recomputed by independent Q1 assembly, is <= 1e-10 "
    "relative") {
  for (int n : {32, 33}) {
    for (double f : {0.0, 3.0}) {
      CAPTURE(n);
      CAPTURE(f);
      const Vec log_nu = smooth_log_nu<3>(n, 3, 9);
      SolveReport report;
      const Vec u = solve<3>(n, log_nu, f, {}, &report);
      const double rel = relative_residual<3>(n, log_nu, Vec(u.size(), f), u);
      MESSAGE("n = " << n << ", f = " << f << ": " << report.iterations << " iterations, relative residual "
                     << rel << " (solver says " << report.relative_residual << ")");
      CHECK(rel <= 1e-10);
      CHECK(std::abs(rel - report.relative_residual) <= 1e-3 * rel + 1e-15);
    }
  }
}

TEST_CASE("the reference solution of fp32 log nu minimises the training loss's own discrete energy") {
  // The loss's K and F (poisson_loss.hpp, the network's side) applied to the batch solver's answer:
  // K u - F vanishes at the free nodes to the solver's tolerance.
  const int n = 48;
  const auto nodes = static_cast<size_t>(n) * n;
  const double f = 2.0;
  const Vec v = smooth_log_nu<2>(n, 3, 40);
  Tensor log_nu = Tensor::empty(Shape{1, 1, n, n}, DType::f32);
  for (size_t i = 0; i < nodes; ++i) log_nu.data<float>()[i] = static_cast<float>(v[i]);
  Tensor u = Tensor::empty(Shape{1, 1, n, n}, DType::f64);
  solve_poisson_batch(log_nu, f, u);
  Vec nu(nodes), ku(nodes), load(nodes), lift(nodes, 0.0), klift(nodes);
  nodal_coefficient(log_nu.data<float>(), static_cast<int64_t>(nodes), nu.data());
  apply_stiffness(nu.data(), u.data<double>(), ku.data(), n);
  load_vector(f, n, load.data());
  for (int iy = 0; iy < n; ++iy) lift[static_cast<size_t>(iy * n)] = 1;
  apply_stiffness(nu.data(), lift.data(), klift.data(), n);
  double num = 0, den = 0;
  for (int iy = 0; iy < n; ++iy)
    for (int ix = 1; ix < n - 1; ++ix) {
      const auto i = static_cast<size_t>(iy * n + ix);
      num += (load[i] - ku[i]) * (load[i] - ku[i]);
      den += (load[i] - klift[i]) * (load[i] - klift[i]);
    }
  CHECK(std::sqrt(num / den) <= 1e-10);
}

TEST_CASE("3D: the reference solution of fp32 log nu minimises the training loss's own discrete energy") {
  // The loss's energy gradient K u - F (poisson_loss.hpp) at the batch solver's answer vanishes at
  // the free nodes to the solver's tolerance, measured against its value at the lift.
  const int n = 20;
  const auto nodes = static_cast<size_t>(nodes_of<3>(n));
  const double f = 2.0;
  const Vec v = smooth_log_nu<3>(n, 3, 40);
  Tensor log_nu = Tensor::empty(Shape{1, 1, n, n, n}, DType::f32);
  for (size_t i = 0; i < nodes; ++i) log_nu.data<float>()[i] = static_cast<float>(v[i]);
  Tensor u = Tensor::empty(Shape{1, 1, n, n, n}, DType::f64);
  solve_poisson_batch(log_nu, f, u);
  Vec nu(nodes), ku(nodes), load(nodes), lift(nodes, 0.0), klift(nodes);
  nodal_coefficient(log_nu.data<float>(), static_cast<int64_t>(nodes), nu.data());
  apply_stiffness(nu.data(), u.data<double>(), ku.data(), n, n, n);
  load_vector(f, n, n, n, load.data());
  for (size_t i = 0; i < nodes; i += static_cast<size_t>(n)) lift[i] = 1;
  apply_stiffness(nu.data(), lift.data(), klift.data(), n, n, n);
  double num = 0, den = 0;
  for (size_t i = 0; i < nodes; ++i) {
    const auto ix = static_cast<int>(i % static_cast<size_t>(n));
    if (ix == 0 || ix == n - 1) continue;
    num += (load[i] - ku[i]) * (load[i] - ku[i]);
    den += (load[i] - klift[i]) * (load[i] - klift[i]);
  }
  CHECK(den > 0);
  CHECK(std::sqrt(num / den) <= 1e-10);
}

TEST_CASE("a manufactured solution converges at second order in h") {
  // u* = 1 - x + x (1 - x) cos(pi y): u*(0, y) = 1, u*(1, y) = 0, du*/dy = 0 on y = 0, 1.
  // log nu = 0.8 sin(2 pi x) cos(pi y) + 0.5 x; f = -div(nu grad u*) = -nu (L_x u_x + L_y u_y + lap u).
  auto u_star = [](double x, double y) { return 1 - x + x * (1 - x) * std::cos(pi * y); };
  auto log_nu_at = [](double x, double y) { return 0.8 * std::sin(2 * pi * x) * std::cos(pi * y) + 0.5 * x; };
  auto f_at = [&](double x, double y) {
    const double lx = 1.6 * pi * std::cos(2 * pi * x) * std::cos(pi * y) + 0.5;
    const double ly = -0.8 * pi * std::sin(2 * pi * x) * std::sin(pi * y);
    const double ux = -1 + (1 - 2 * x) * std::cos(pi * y), uy = -pi * x * (1 - x) * std::sin(pi * y);
    const double lap = -2 * std::cos(pi * y) - pi * pi * x * (1 - x) * std::cos(pi * y);
    return -std::exp(log_nu_at(x, y)) * (lx * ux + ly * uy + lap);
  };
  std::vector<double> errors;
  for (int n : {17, 33, 65, 129}) {
    const auto nodes = static_cast<size_t>(n) * n;
    Vec log_nu(nodes), f(nodes), exact(nodes), u(nodes);
    for (int iy = 0; iy < n; ++iy)
      for (int ix = 0; ix < n; ++ix) {
        const double x = double(ix) / (n - 1), y = double(iy) / (n - 1);
        const auto i = static_cast<size_t>(iy * n + ix);
        log_nu[i] = log_nu_at(x, y);
        f[i] = f_at(x, y);
        exact[i] = u_star(x, y);
      }
    PoissonSolver<2>(n, {}, /*threads=*/false).solve(log_nu.data(), Source::nodal(f.data()), u.data());
    double err = 0;
    for (size_t i = 0; i < nodes; ++i) err = std::max(err, std::abs(u[i] - exact[i]));
    errors.push_back(err);
  }
  for (size_t k = 1; k < errors.size(); ++k) {
    const double order = std::log2(errors[k - 1] / errors[k]);
    MESSAGE("max-norm error " << errors[k - 1] << " -> " << errors[k] << ": order " << order);
    CHECK(order >= 1.8);
    CHECK(order <= 2.2);
  }
}

TEST_CASE("3D: a manufactured solution converges at second order in h") {
  // u* = 1 - x + x (1 - x) cos(pi y) cos(pi z): u* = 1 on x = 0, 0 on x = 1, and its normal
  // derivative vanishes on the y and z faces (the natural condition, whatever nu is there).
  // log nu = L = 0.8 sin(2 pi x) cos(pi y) cos(pi z) + 0.5 x + 0.4 sin(pi z), varying along every
  // axis; f = -div(nu grad u*) = -nu (grad L . grad u* + lap u*).
  auto u_star = [](double x, double y, double z) {
    return 1 - x + x * (1 - x) * std::cos(pi * y) * std::cos(pi * z);
  };
  auto log_nu_at = [](double x, double y, double z) {
    return 0.8 * std::sin(2 * pi * x) * std::cos(pi * y) * std::cos(pi * z) + 0.5 * x +
           0.4 * std::sin(pi * z);
  };
  auto f_at = [&](double x, double y, double z) {
    const double cy = std::cos(pi * y), sy = std::sin(pi * y), cz = std::cos(pi * z), sz = std::sin(pi * z);
    const double s2 = std::sin(2 * pi * x), c2 = std::cos(2 * pi * x), g = x * (1 - x);
    const double lx = 1.6 * pi * c2 * cy * cz + 0.5, ly = -0.8 * pi * s2 * sy * cz;
    const double lz = -0.8 * pi * s2 * cy * sz + 0.4 * pi * cz;
    const double ux = -1 + (1 - 2 * x) * cy * cz, uy = -pi * g * sy * cz, uz = -pi * g * cy * sz;
    const double lap = -2 * cy * cz - 2 * pi * pi * g * cy * cz;
    return -std::exp(log_nu_at(x, y, z)) * (lx * ux + ly * uy + lz * uz + lap);
  };
  std::vector<double> errors;
  for (int n : {9, 17, 33, 65}) {
    const auto nodes = static_cast<size_t>(nodes_of<3>(n));
    Vec log_nu(nodes), f(nodes), exact(nodes), u(nodes);
    for (size_t i = 0; i < nodes; ++i) {
      const auto [x, y, z] = coordinates<3>(n, static_cast<int64_t>(i));
      log_nu[i] = log_nu_at(x, y, z);
      f[i] = f_at(x, y, z);
      exact[i] = u_star(x, y, z);
    }
    PoissonSolver<3>(n, {}, /*threads=*/false).solve(log_nu.data(), Source::nodal(f.data()), u.data());
    double err = 0;
    for (size_t i = 0; i < nodes; ++i) err = std::max(err, std::abs(u[i] - exact[i]));
    errors.push_back(err);
  }
  for (size_t k = 1; k < errors.size(); ++k) {
    const double order = std::log2(errors[k - 1] / errors[k]);
    MESSAGE("3D max-norm error " << errors[k - 1] << " -> " << errors[k] << ": order " << order);
    CHECK(order >= 1.8);
    CHECK(order <= 2.2);
  }
  CHECK(errors.back() < 1e-3);  // and the error itself is small: the right equation is being solved
}

TEST_CASE("the iteration count does not grow with the resolution") {
  for (const auto& [coarse_n, fine_n] : {std::pair{65, 257}, std::pair{64, 256}}) {
    SolveReport small, large;
    solve(coarse_n, smooth_log_nu<2>(coarse_n, 3, 10), 0, {}, &small);
    solve(fine_n, smooth_log_nu<2>(fine_n, 3, 10), 0, {}, &large);
    MESSAGE("iterations: " << small.iterations << " at " << coarse_n << "^2, " << large.iterations << " at "
                           << fine_n << "^2");
    CHECK(large.iterations < 2 * small.iterations);
    CHECK(small.iterations < 2 * large.iterations);
  }
}

TEST_CASE("3D: the iteration count does not grow with the resolution") {
  for (const auto& sizes : {std::array{17, 33, 65}, std::array{16, 32, 64}}) {
    std::array<int, 3> its{};
    for (size_t k = 0; k < sizes.size(); ++k) {
      SolveReport report;
      solve<3>(sizes[k], smooth_log_nu<3>(sizes[k], 3, 10), 0, {}, &report);
      its[k] = report.iterations;
    }
    MESSAGE("3D iterations: " << its[0] << " at " << sizes[0] << "^3, " << its[1] << " at " << sizes[1]
                              << "^3, " << its[2] << " at " << sizes[2] << "^3");
    CHECK(its[2] <= its[0] + 2);
    CHECK(its[2] <= its[1] + 2);
    CHECK(its[2] <= 20);
  }
}

TEST_CASE("conjugate gradients without multigrid need many more iterations") {
  const int n = 65;
  const Vec log_nu = smooth_log_nu<2>(n, 3, 11);
  SolveReport mg, jacobi, plain;
  SolverOptions options;
  options.max_iterations = 5000;
  const Vec u_mg = solve(n, log_nu, 0, options, &mg);
  options.preconditioner = Preconditioner::jacobi;
  const Vec u_jacobi = solve(n, log_nu, 0, options, &jacobi);
  options.preconditioner = Preconditioner::none;
  solve(n, log_nu, 0, options, &plain);
  MESSAGE("iterations at 65^2, contrast e^6: multigrid " << mg.iterations << ", Jacobi " << jacobi.iterations
                                                         << ", none " << plain.iterations);
  CHECK(jacobi.iterations >= 10 * mg.iterations);
  CHECK(plain.iterations >= 10 * mg.iterations);
  CHECK(testing::rel_max_error(u_jacobi, u_mg) < 1e-7);  // the same system, whatever the preconditioner
}

// b samples of smooth fp32 log nu on the n^Dim grid, as a [b, 1, n, ...] tensor, and the single
// solves of each (with the fp32-rounded input the batch sees).
template <int Dim>
void check_batch(int n, int batch, double f) {
  const auto nodes = static_cast<size_t>(nodes_of<Dim>(n));
  Shape shape{batch, 1};
  for (int d = 0; d < Dim; ++d) shape.push_back(n);
  Tensor log_nu = Tensor::empty(shape, DType::f32);
  std::vector<Vec> single;
  for (int s = 0; s < batch; ++s) {
    Vec v = smooth_log_nu<Dim>(n, 3, 20 + static_cast<uint64_t>(s));
    for (size_t i = 0; i < nodes; ++i) {
      log_nu.data<float>()[static_cast<size_t>(s) * nodes + i] = static_cast<float>(v[i]);
      v[i] = static_cast<float>(v[i]);  // the batch sees fp32 input
    }
    single.push_back(solve<Dim>(n, v, f, {}));
  }
  Tensor u64 = Tensor::empty(shape, DType::f64);
  Tensor u32 = Tensor::empty(shape, DType::f32);
  const auto reports = solve_poisson_batch(log_nu, f, u64);
  solve_poisson_batch(log_nu, f, u32);
  REQUIRE(reports.size() == static_cast<size_t>(batch));
  for (int s = 0; s < batch; ++s)
    for (size_t i = 0; i < nodes; ++i) {
      const double expect = single[static_cast<size_t>(s)][i];
      REQUIRE(u64.data<double>()[static_cast<size_t>(s) * nodes + i] == expect);
      REQUIRE(u32.data<float>()[static_cast<size_t>(s) * nodes + i] == static_cast<float>(expect));
    }
}

TEST_CASE("batch solves equal single solves bitwise, into fp64 and fp32") { check_batch<2>(33, 3, 1.5); }

TEST_CASE("3D: batch solves equal single solves bitwise, into fp64 and fp32") {
  // One sample per thread (small grids), then each solve over all threads (more nodes than
  // batch_sample_parallel_max_nodes).
  check_batch<3>(17, 3, 1.5);
  REQUIRE(nodes_of<3>(41) > batch_sample_parallel_max_nodes);
  check_batch<3>(41, 2, 1.5);
}

template <int Dim>
void check_thread_independence(int n) {
  const Vec log_nu = smooth_log_nu<Dim>(n, 3, 12);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const Vec one = solve<Dim>(n, log_nu, 0.5, {}, nullptr, /*threads=*/true);
  omp_set_num_threads(std::max(2, threads));
  const Vec many = solve<Dim>(n, log_nu, 0.5, {}, nullptr, /*threads=*/true);
  omp_set_num_threads(threads);
  const Vec serial = solve<Dim>(n, log_nu, 0.5, {}, nullptr, /*threads=*/false);  // no OpenMP team at all
  CHECK(one == many);
  CHECK(serial == many);
}

TEST_CASE("the solution does not depend on the number of threads") { check_thread_independence<2>(257); }

TEST_CASE("3D: the solution does not depend on the number of threads") {
  // 52^3: the two finest levels (52^3, 27^3) and the Galerkin product onto 27^3 run over teams.
  REQUIRE(GridLayout<3>::cube(27).worth_threads());
  check_thread_independence<3>(52);
}

TEST_CASE("a solve that cannot reach the tolerance throws, naming the residual reached") {
  const int n = 65;
  SolverOptions options;
  options.max_iterations = 2;
  try {
    solve(n, smooth_log_nu<2>(n, 3, 13), 0, options);
    FAIL("no exception");
  } catch (const Error& e) {
    const std::string what = e.what();
    CHECK(what.find("relative residual") != std::string::npos);
    CHECK(what.find("after 2 iterations") != std::string::npos);
  }
}

TEST_CASE("a coefficient whose exp is not finite and positive is rejected, naming the node") {
  const int n = 17;
  Vec log_nu(static_cast<size_t>(n) * n, 0.0);
  log_nu[static_cast<size_t>(5 * n + 3)] = 800;  // exp overflows
  try {
    solve(n, log_nu, 0, {});
    FAIL("no exception");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("node (3, 5)") != std::string::npos);
  }
  Vec log_nu3(static_cast<size_t>(nodes_of<3>(n)), 0.0);
  log_nu3[static_cast<size_t>((2 * n + 5) * n + 3)] = 800;
  try {
    solve<3>(n, log_nu3, 0, {});
    FAIL("no exception");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("node (3, 5, 2)") != std::string::npos);
  }
}

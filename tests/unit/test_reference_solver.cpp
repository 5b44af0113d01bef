// The poisson2d reference solver: its answers against the assembled Q1 system and against an exact
// solution, its multigrid against dense linear algebra, its cost against plain CG.
#include <omp.h>

#include <cmath>
#include <numbers>
#include <string>

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

// A smooth random log nu with max |log nu| = amplitude (amplitude 3: contrast e^6, the KL field's
// range at sigma = 1): a few cosine modes with random weights.
Vec smooth_log_nu(int n, double amplitude, uint64_t stream) {
  const Vec w = testing::random_vec(12, stream);
  Vec v(static_cast<size_t>(n) * n);
  double peak = 0;
  for (int iy = 0; iy < n; ++iy)
    for (int ix = 0; ix < n; ++ix) {
      const double x = double(ix) / (n - 1), y = double(iy) / (n - 1);
      double s = 0;
      for (int k = 0; k < 12; ++k) {
        const int kx = k % 4, ky = k / 4;
        s += w[static_cast<size_t>(k)] * std::cos(pi * (kx * x + 0.3 * k)) *
             std::cos(pi * (ky * y + 0.7 * k)) / (1.0 + kx + ky);
      }
      v[static_cast<size_t>(iy * n + ix)] = s;
      peak = std::max(peak, std::abs(s));
    }
  for (double& x : v) x *= amplitude / peak;
  return v;
}

// The Q1 system assembled here independently of the solver, from q1::element_matrix/element_load:
// K u and F for the full grid (no elimination).
Vec apply_k(int n, const Vec& log_nu, const Vec& u) {
  const double h = 1.0 / (n - 1);
  Vec ku(u.size(), 0.0);
  for (int ey = 0; ey < n - 1; ++ey)
    for (int ex = 0; ex < n - 1; ++ex) {
      long idx[4];
      q1::element_nodes(ex, ey, n, idx);
      double nu[4], nu_q[4], k[16];
      for (int a = 0; a < 4; ++a) nu[a] = std::exp(log_nu[static_cast<size_t>(idx[a])]);
      q1::gauss_values(nu, nu_q);
      q1::element_matrix(nu_q, h, h, k);
      for (int a = 0; a < 4; ++a)
        for (int b = 0; b < 4; ++b)
          ku[static_cast<size_t>(idx[a])] += k[a * 4 + b] * u[static_cast<size_t>(idx[b])];
    }
  return ku;
}

Vec load_f(int n, const Vec& f) {
  const double h = 1.0 / (n - 1);
  Vec load(f.size(), 0.0);
  for (int ey = 0; ey < n - 1; ++ey)
    for (int ex = 0; ex < n - 1; ++ex) {
      long idx[4];
      q1::element_nodes(ex, ey, n, idx);
      double fa[4], f_q[4], fe[4];
      for (int a = 0; a < 4; ++a) fa[a] = f[static_cast<size_t>(idx[a])];
      q1::gauss_values(fa, f_q);
      q1::element_load(f_q, h, h, fe);
      for (int a = 0; a < 4; ++a) load[static_cast<size_t>(idx[a])] += fe[a];
    }
  return load;
}

// ||F - K u|| / ||F - K u_lift|| over the free nodes (x != 0, 1).
double relative_residual(int n, const Vec& log_nu, const Vec& f, const Vec& u) {
  Vec lift(u.size(), 0.0);
  for (int iy = 0; iy < n; ++iy) lift[static_cast<size_t>(iy * n)] = 1;
  const Vec load = load_f(n, f), ku = apply_k(n, log_nu, u), klift = apply_k(n, log_nu, lift);
  double num = 0, den = 0;
  for (int iy = 0; iy < n; ++iy)
    for (int ix = 1; ix < n - 1; ++ix) {
      const auto i = static_cast<size_t>(iy * n + ix);
      num += (load[i] - ku[i]) * (load[i] - ku[i]);
      den += (load[i] - klift[i]) * (load[i] - klift[i]);
    }
  return std::sqrt(num / den);
}

// The eliminated Q1 operator written into a stencil (the test's own assembly, for multigrid tests).
void fill_q1_operator(StencilOperator& a, const Vec& log_nu) {
  const int n = a.layout().nx;
  const double h = 1.0 / (n - 1);
  a.set_zero();
  for (int ey = 0; ey < n - 1; ++ey)
    for (int ex = 0; ex < n - 1; ++ex) {
      long idx[4];
      q1::element_nodes(ex, ey, n, idx);
      double nu[4], nu_q[4], k[16];
      for (int l = 0; l < 4; ++l) nu[l] = std::exp(log_nu[static_cast<size_t>(idx[l])]);
      q1::gauss_values(nu, nu_q);
      q1::element_matrix(nu_q, h, h, k);
      for (int p = 0; p < 4; ++p)
        for (int q = 0; q < 4; ++q) {
          const int px = ex + (p & 1), py = ey + (p >> 1), qx = ex + (q & 1), qy = ey + (q >> 1);
          const bool free = px != 0 && px != n - 1 && qx != 0 && qx != n - 1;
          const int term = a.term_of(qx - px, qy - py);
          if (free && term >= 0) a.coefficients(term)(px, py) += k[p * 4 + q];
        }
    }
  for (int iy = 0; iy < n; ++iy) a.coefficients(0)(0, iy) = a.coefficients(0)(n - 1, iy) = 1;
}

// A random symmetric stencil operator with the Dirichlet structure (identity rows on x = 0, 1).
StencilOperator random_operator(const GridLayout& g, int radius, uint64_t stream) {
  StencilOperator a(g, radius);
  const Vec v = testing::random_vec(static_cast<size_t>(a.terms() * g.nodes()), stream, 0.1, 1);
  size_t next = 0;
  for (int k = 0; k < a.terms(); ++k)
    for (int iy = 0; iy < g.ny; ++iy)
      for (int ix = 0; ix < g.nx; ++ix) {
        const auto [dx, dy] = a.offset(k);
        const int jx = ix + dx, jy = iy + dy;
        const bool free = ix > 0 && ix < g.nx - 1 && jx > 0 && jx < g.nx - 1 && jy >= 0 && jy < g.ny;
        const double value = v[next++];
        if (k == 0)
          a.coefficients(0)(ix, iy) = (ix == 0 || ix == g.nx - 1) ? 1 : 10 + value;
        else if (free)
          a.coefficients(k)(ix, iy) = -value;
      }
  return a;
}

Field field_from(const GridLayout& g, const Vec& v) {
  Field f(g);
  for (int iy = 0; iy < g.ny; ++iy)
    for (int ix = 0; ix < g.nx; ++ix) f(ix, iy) = v[static_cast<size_t>(iy * g.nx + ix)];
  return f;
}

Vec values_of(const Field& f) {
  const GridLayout& g = f.layout();
  Vec v(static_cast<size_t>(g.nodes()));
  for (int iy = 0; iy < g.ny; ++iy)
    for (int ix = 0; ix < g.nx; ++ix) v[static_cast<size_t>(iy * g.nx + ix)] = f(ix, iy);
  return v;
}

// Dense prolongation from the definition: coarse hat functions at the fine nodes, Dirichlet
// columns (x = 0, 1) dropped. Row-major, fine nodes x coarse nodes.
Vec dense_prolongation(const GridLayout& fine, const GridLayout& coarse) {
  auto hat = [](int i, int nf, int j, int nc) {
    const double x = double(i) / (nf - 1), xc = double(j) / (nc - 1), hc = 1.0 / (nc - 1);
    return std::max(0.0, 1 - std::abs(x - xc) / hc);
  };
  const int64_t nf = fine.nodes(), nc = coarse.nodes();
  Vec p(static_cast<size_t>(nf * nc), 0.0);
  for (int iy = 0; iy < fine.ny; ++iy)
    for (int ix = 0; ix < fine.nx; ++ix)
      for (int jy = 0; jy < coarse.ny; ++jy)
        for (int jx = 1; jx < coarse.nx - 1; ++jx)
          p[static_cast<size_t>((iy * fine.nx + ix) * nc + jy * coarse.nx + jx)] =
              hat(ix, fine.nx, jx, coarse.nx) * hat(iy, fine.ny, jy, coarse.ny);
  return p;
}

// P^T A P from the definition, summed over fine nodes i, their stencil neighbours k and the coarse
// hats nonzero at i and at k, into full 5 x 5 coarse stencils: [node * 25 + (dy + 2) * 5 + dx + 2].
Vec sparse_galerkin(const StencilOperator& a, const GridLayout& coarse) {
  const GridLayout& fine = a.layout();
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
  const auto px = parents(fine.nx, coarse.nx, true), py = parents(fine.ny, coarse.ny, false);
  const int r = a.radius();
  Vec ac(static_cast<size_t>(coarse.nodes()) * 25, 0.0);
  bool in_reach = true;
  for (int iy = 0; iy < fine.ny; ++iy)
    for (int ix = 0; ix < fine.nx; ++ix)
      for (int dy = -r; dy <= r; ++dy)
        for (int dx = -r; dx <= r; ++dx) {
          const int kx = ix + dx, ky = iy + dy;
          if (kx < 0 || kx >= fine.nx || ky < 0 || ky >= fine.ny) continue;
          const double v = a.entry(ix, iy, dx, dy);
          if (v == 0) continue;
          for (const auto& [jx, wjx] : px[static_cast<size_t>(ix)])
            for (const auto& [jy, wjy] : py[static_cast<size_t>(iy)])
              for (const auto& [mx, wmx] : px[static_cast<size_t>(kx)])
                for (const auto& [my, wmy] : py[static_cast<size_t>(ky)]) {
                  const int ox = mx - jx, oy = my - jy;
                  if (std::abs(ox) > 2 || std::abs(oy) > 2) {
                    in_reach = false;
                    continue;
                  }
                  ac[static_cast<size_t>((jy * coarse.nx + jx) * 25 + (oy + 2) * 5 + ox + 2)] +=
                      wjx * wjy * v * wmx * wmy;
                }
        }
  CHECK(in_reach);
  for (int jy = 0; jy < coarse.ny; ++jy)
    for (int jx : {0, coarse.nx - 1}) ac[static_cast<size_t>((jy * coarse.nx + jx) * 25 + 12)] = 1;
  return ac;
}

// One solve on one thread unless told otherwise: solves are bitwise the same on any thread count
// (tested below), and single-threaded tests do not stall when ctest runs binaries side by side.
Vec solve(int n, const Vec& log_nu, double f, const SolverOptions& options, SolveReport* report = nullptr,
          bool threads = false) {
  Vec u(static_cast<size_t>(n) * n);
  Poisson2DSolver solver(n, options, threads);
  const SolveReport r = solver.solve(log_nu.data(), Source::constant(f), u.data());
  if (report != nullptr) *report = r;
  return u;
}

}  // namespace

// ---- building blocks ---------------------------------------------------------------------------

TEST_CASE("a stencil operator's product equals its dense matrix, which is symmetric") {
  for (int radius : {1, 2}) {
    CAPTURE(radius);
    const GridLayout g(9, 7);
    const StencilOperator a = random_operator(g, radius, 1);
    const Vec dense = a.to_dense();
    const auto nodes = static_cast<size_t>(g.nodes());
    for (size_t i = 0; i < nodes; ++i)
      for (size_t j = 0; j < i; ++j) REQUIRE(dense[i * nodes + j] == dense[j * nodes + i]);
    const Vec x = testing::random_vec(nodes, 2);
    Vec expect(nodes, 0.0);
    for (size_t i = 0; i < nodes; ++i)
      for (size_t j = 0; j < nodes; ++j) expect[i] += dense[i * nodes + j] * x[j];
    Field xf = field_from(g, x), yf(g);
    a.apply(xf, yf, false);
    CHECK(testing::rel_max_error(values_of(yf), expect) < 1e-14);
    Field zf = field_from(g, x);
    a.subtract_apply(xf, zf, true);
    Vec expect_sub = x;
    for (size_t i = 0; i < nodes; ++i) expect_sub[i] -= expect[i];
    CHECK(testing::rel_max_error(values_of(zf), expect_sub) < 1e-14);
  }
}

TEST_CASE(
    "prolongation is bilinear interpolation between non-nested and nested grids, restriction its transpose") {
  for (const auto& [fine_n, coarse_n] : {std::pair{10, 6}, std::pair{9, 5}, std::pair{64, 33}}) {
    CAPTURE(fine_n);
    const int cells_y = fine_n - 2;  // a non-square fine grid: the other axis coarsens on its own
    const GridLayout fine(fine_n, cells_y + 1), coarse(coarse_n, (cells_y + 1) / 2 + 1);
    GridTransfer t(fine, coarse);
    const Vec p = dense_prolongation(fine, coarse);
    const auto nf = static_cast<size_t>(fine.nodes()), nc = static_cast<size_t>(coarse.nodes());
    const Vec ec = testing::random_vec(nc, 3), rf = testing::random_vec(nf, 4);
    Vec pe(nf, 0.0), ptr(nc, 0.0);
    for (size_t i = 0; i < nf; ++i)
      for (size_t j = 0; j < nc; ++j) {
        pe[i] += p[i * nc + j] * ec[j];
        ptr[j] += p[i * nc + j] * rf[i];
      }
    Field fine_field(fine), coarse_field(coarse);
    t.prolong_add(field_from(coarse, ec), fine_field, true);
    CHECK(testing::rel_max_error(values_of(fine_field), pe) < 1e-14);
    t.restrict_to(field_from(fine, rf), coarse_field, true);
    CHECK(testing::rel_max_error(values_of(coarse_field), ptr) < 1e-14);
  }
}

TEST_CASE("the Galerkin coarse operator equals P^T A P formed densely, with identity Dirichlet rows") {
  for (const auto& [fine_n, coarse_n] : {std::pair{12, 7}, std::pair{13, 7}}) {
    for (int radius : {1, 2}) {
      CAPTURE(fine_n);
      CAPTURE(radius);
      const GridLayout fine(fine_n, fine_n), coarse(coarse_n, coarse_n);
      const StencilOperator a = random_operator(fine, radius, 5);
      const StencilOperator ac = GridTransfer(fine, coarse).galerkin(a, true);
      CHECK(ac.radius() == ((radius == 1 && fine_n == 13) ? 1 : 2));
      const Vec p = dense_prolongation(fine, coarse), ad = a.to_dense();
      const auto nf = static_cast<size_t>(fine.nodes()), nc = static_cast<size_t>(coarse.nodes());
      Vec ap(nf * nc, 0.0), expect(nc * nc, 0.0);
      for (size_t i = 0; i < nf; ++i)
        for (size_t k = 0; k < nf; ++k)
          if (ad[i * nf + k] != 0)
            for (size_t j = 0; j < nc; ++j) ap[i * nc + j] += ad[i * nf + k] * p[k * nc + j];
      for (size_t i = 0; i < nf; ++i)
        for (size_t j = 0; j < nc; ++j)
          for (size_t m = 0; m < nc; ++m) expect[j * nc + m] += p[i * nc + j] * ap[i * nc + m];
      for (int jy = 0; jy < coarse_n; ++jy)
        for (int jx : {0, coarse_n - 1}) {
          const auto d = static_cast<size_t>(jy * coarse_n + jx);
          expect[d * nc + d] = 1;
        }
      CHECK(testing::rel_max_error(ac.to_dense(), expect) < 1e-13);
    }
  }
}

TEST_CASE("the Galerkin coarse operator of large grids equals P^T A P summed from its definition") {
  // More than 64 coarse rows, so the product's row blocks hold several rows and share fine rows.
  for (const auto& [fine_n, coarse_n] : {std::pair{260, 131}, std::pair{257, 129}}) {
    for (int radius : {1, 2}) {
      CAPTURE(fine_n);
      CAPTURE(radius);
      const GridLayout fine(fine_n, fine_n), coarse(coarse_n, coarse_n);
      const StencilOperator a = random_operator(fine, radius, 6);
      const StencilOperator ac = GridTransfer(fine, coarse).galerkin(a, true);
      const Vec expect = sparse_galerkin(a, coarse);
      Vec got(expect.size());
      for (int jy = 0; jy < coarse_n; ++jy)
        for (int jx = 0; jx < coarse_n; ++jx)
          for (int oy = -2; oy <= 2; ++oy)
            for (int ox = -2; ox <= 2; ++ox)
              got[static_cast<size_t>((jy * coarse_n + jx) * 25 + (oy + 2) * 5 + ox + 2)] =
                  std::abs(ox) <= ac.radius() && std::abs(oy) <= ac.radius() ? ac.entry(jx, jy, ox, oy) : 0.0;
      CHECK(testing::rel_max_error(got, expect) < 1e-13);
    }
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
  auto sizes = [](int n) {
    Multigrid mg(n, n, false);
    std::vector<int> s;
    for (int l = 0; l < mg.levels(); ++l) s.push_back(mg.level_layout(l).nx);
    return s;
  };
  CHECK(sizes(64) == std::vector<int>{64, 33, 17});
  CHECK(sizes(65) == std::vector<int>{65, 33, 17});
  CHECK(sizes(1024) == std::vector<int>{1024, 513, 257, 129, 65, 33, 17});
  CHECK(sizes(17) == std::vector<int>{17});
}

TEST_CASE("the multigrid V-cycle is a symmetric positive definite operator") {
  for (const auto& [n, degree] : {std::pair{64, 1}, std::pair{65, 1}, std::pair{64, 3}}) {
    CAPTURE(n);
    CAPTURE(degree);
    MultigridOptions options;
    options.smoothing_degree = degree;
    Multigrid mg(n, n, true, options);
    fill_q1_operator(mg.fine_operator(), smooth_log_nu(n, 3, 6));
    mg.setup();
    const GridLayout g = mg.fine_operator().layout();
    const auto nodes = static_cast<size_t>(g.nodes());
    Vec v1 = testing::random_vec(nodes, 7), v2 = testing::random_vec(nodes, 8);
    for (int iy = 0; iy < n; ++iy) {  // the Dirichlet rows carry no residual
      v1[static_cast<size_t>(iy * n)] = v1[static_cast<size_t>(iy * n + n - 1)] = 0;
      v2[static_cast<size_t>(iy * n)] = v2[static_cast<size_t>(iy * n + n - 1)] = 0;
    }
    const Field r1 = field_from(g, v1), r2 = field_from(g, v2);
    Field z1(g), z2(g);
    mg.apply(r1, z1);
    mg.apply(r2, z2);
    const double b12 = dot(z1, r2, false), b21 = dot(r1, z2, false);
    CHECK(std::abs(b12 - b21) <= 1e-12 * std::sqrt(dot(z1, r1, false) * dot(z2, r2, false)));
    CHECK(dot(z1, r1, false) > 0);
    CHECK(dot(z2, r2, false) > 0);
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
  solve_poisson2d(log_nu.data(), Source::constant(0), n, u.data());  // the one-call form
  Vec exact(u.size());
  for (int iy = 0; iy < n; ++iy)
    for (int ix = 0; ix < n; ++ix) exact[static_cast<size_t>(iy * n + ix)] = 1 - double(ix) / (n - 1);
  CHECK(testing::rel_max_error(u, exact) < 1e-9);
}

TEST_CASE(
    "the residual of the returned solution, recomputed by independent Q1 assembly, is <= 1e-10 relative") {
  for (int n : {64, 65}) {
    for (double f : {0.0, 3.0}) {
      CAPTURE(n);
      CAPTURE(f);
      const Vec log_nu = smooth_log_nu(n, 3, 9);
      SolveReport report;
      const Vec u = solve(n, log_nu, f, {}, &report);
      const double rel = relative_residual(n, log_nu, Vec(u.size(), f), u);
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
  const Vec v = smooth_log_nu(n, 3, 40);
  Tensor log_nu = Tensor::empty(Shape{1, 1, n, n}, DType::f32);
  for (size_t i = 0; i < nodes; ++i) log_nu.data<float>()[i] = static_cast<float>(v[i]);
  Tensor u = Tensor::empty(Shape{1, 1, n, n}, DType::f64);
  solve_poisson2d_batch(log_nu, f, u);
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
    Poisson2DSolver(n, {}, /*threads=*/false).solve(log_nu.data(), Source::nodal(f.data()), u.data());
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

TEST_CASE("the iteration count does not grow with the resolution") {
  for (const auto& [coarse_n, fine_n] : {std::pair{65, 257}, std::pair{64, 256}}) {
    SolveReport small, large;
    solve(coarse_n, smooth_log_nu(coarse_n, 3, 10), 0, {}, &small);
    solve(fine_n, smooth_log_nu(fine_n, 3, 10), 0, {}, &large);
    MESSAGE("iterations: " << small.iterations << " at " << coarse_n << "^2, " << large.iterations << " at "
                           << fine_n << "^2");
    CHECK(large.iterations < 2 * small.iterations);
    CHECK(small.iterations < 2 * large.iterations);
  }
}

TEST_CASE("conjugate gradients without multigrid need many more iterations") {
  const int n = 65;
  const Vec log_nu = smooth_log_nu(n, 3, 11);
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

TEST_CASE("batch solves equal single solves bitwise, into fp64 and fp32") {
  const int n = 33, batch = 3;
  const auto nodes = static_cast<size_t>(n) * n;
  Tensor log_nu = Tensor::empty(Shape{batch, 1, n, n}, DType::f32);
  std::vector<Vec> single;
  for (int s = 0; s < batch; ++s) {
    Vec v = smooth_log_nu(n, 3, 20 + static_cast<uint64_t>(s));
    for (size_t i = 0; i < nodes; ++i) {
      log_nu.data<float>()[static_cast<size_t>(s) * nodes + i] = static_cast<float>(v[i]);
      v[i] = static_cast<float>(v[i]);  // the batch sees fp32 input
    }
    single.push_back(solve(n, v, 1.5, {}));
  }
  Tensor u64 = Tensor::empty(Shape{batch, 1, n, n}, DType::f64);
  Tensor u32 = Tensor::empty(Shape{batch, 1, n, n}, DType::f32);
  const auto reports = solve_poisson2d_batch(log_nu, 1.5, u64);
  solve_poisson2d_batch(log_nu, 1.5, u32);
  REQUIRE(reports.size() == static_cast<size_t>(batch));
  for (int s = 0; s < batch; ++s)
    for (size_t i = 0; i < nodes; ++i) {
      const double expect = single[static_cast<size_t>(s)][i];
      REQUIRE(u64.data<double>()[static_cast<size_t>(s) * nodes + i] == expect);
      REQUIRE(u32.data<float>()[static_cast<size_t>(s) * nodes + i] == static_cast<float>(expect));
    }
}

TEST_CASE("the solution does not depend on the number of threads") {
  const int n = 257;
  const Vec log_nu = smooth_log_nu(n, 3, 12);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const Vec one = solve(n, log_nu, 0.5, {}, nullptr, /*threads=*/true);
  omp_set_num_threads(std::max(2, threads));
  const Vec many = solve(n, log_nu, 0.5, {}, nullptr, /*threads=*/true);
  omp_set_num_threads(threads);
  const Vec serial = solve(n, log_nu, 0.5, {}, nullptr, /*threads=*/false);  // no OpenMP team at all
  CHECK(one == many);
  CHECK(serial == many);
}

TEST_CASE("a solve that cannot reach the tolerance throws, naming the residual reached") {
  const int n = 65;
  SolverOptions options;
  options.max_iterations = 2;
  try {
    solve(n, smooth_log_nu(n, 3, 13), 0, options);
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
}

// Geometric multigrid V-cycle for the reference solver (see multigrid.hpp).
#include "physics/multigrid.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"

namespace pdegen::physics {

namespace {

void copy_rows(const Field& src, Field& dst, bool threads) {
  const int nx = src.layout().nx;
  for_rows(src.layout().ny, threads, [&](int iy) {
    const double* s = src.row(iy);
    double* d = dst.row(iy);
    for (int ix = 0; ix < nx; ++ix) d[ix] = s[ix];
  });
}

}  // namespace

Multigrid::Multigrid(int nx, int ny, bool threads, const MultigridOptions& options) : options_(options) {
  PDEGEN_CHECK(options.smoothing_degree >= 1, "Chebyshev degree must be >= 1, got {}",
               options.smoothing_degree);
  PDEGEN_CHECK(options.smoothing_range > 1, "smoothing range must be > 1, got {}", options.smoothing_range);
  auto add_level = [&](const GridLayout& g, int radius) {
    Level& l = levels_.emplace_back();
    l.layout = g;
    l.threads = threads && g.worth_threads();
    l.a = StencilOperator(g, radius);
    l.inv_diag = Field(g);
    l.b = Field(g);
    l.x = Field(g);
    l.r = Field(g);
    l.d = Field(g);
  };
  add_level(GridLayout(nx, ny), 1);
  for (;;) {
    const GridLayout g = levels_.back().layout;  // a copy: add_level() moves the levels
    const int mx = g.nx - 1, my = g.ny - 1;
    if (g.nodes() <= options.coarsest_nodes || mx < 4 || my < 4) break;
    const GridLayout coarse((mx + 1) / 2 + 1, (my + 1) / 2 + 1);
    transfers_.emplace_back(g, coarse);
    add_level(coarse, 2);  // the real radius is chosen by the Galerkin product in setup()
  }
  coarse_rhs_.resize(static_cast<size_t>(levels_.back().layout.nodes()));
}

void Multigrid::setup() {
  for (size_t l = 0; l + 1 < levels_.size(); ++l)
    levels_[l + 1].a = transfers_[l].galerkin(levels_[l].a, levels_[l].threads);
  for (size_t l = 0; l + 1 < levels_.size(); ++l) {
    Level& lv = levels_[l];
    const int nx = lv.layout.nx;
    for_rows(lv.layout.ny, lv.threads, [&](int iy) {
      const double* diag = lv.a.diagonal().row(iy);
      double* inv = lv.inv_diag.row(iy);
      for (int ix = 0; ix < nx; ++ix) inv[ix] = 1 / diag[ix];
    });
    lv.upper = lv.a.jacobi_gershgorin_bound(lv.threads);
    lv.lower = lv.upper / options_.smoothing_range;
  }
  const StencilOperator& coarsest = levels_.back().a;
  coarsest_ = DenseCholesky(coarsest.to_dense(), static_cast<int>(coarsest.layout().nodes()));
}

void Multigrid::smooth(Level& lv, const Field& b, Field& x, bool from_zero, bool want_residual) {
  // Chebyshev iteration on D^-1 A for the interval [lower, upper] (Saad, Iterative Methods, alg. 12.1),
  // keeping the residual r = b - A x up to date with one product per step.
  const GridLayout& g = lv.layout;
  const bool threads = lv.threads;
  const double theta = (from_zero ? 1.0 : 1.05) * 0.5 * (lv.upper + lv.lower), delta = 0.5 * (lv.upper - lv.lower);
  const double sigma = theta / delta;
  double rho = 1 / sigma;
  copy_rows(b, lv.r, threads);
  if (!from_zero) lv.a.subtract_apply(x, lv.r, threads);
  for_rows(g.ny, threads, [&](int iy) {
    const double* rr = lv.r.row(iy);
    const double* inv = lv.inv_diag.row(iy);
    double* dr = lv.d.row(iy);
    double* xr = x.row(iy);
    for (int ix = 0; ix < g.nx; ++ix) {
      dr[ix] = inv[ix] * rr[ix] / theta;
      xr[ix] = (from_zero ? 0.0 : xr[ix]) + dr[ix];
    }
  });
  for (int k = 1; k < options_.smoothing_degree; ++k) {
    lv.a.subtract_apply(lv.d, lv.r, threads);
    const double rho_next = 1 / (2 * sigma - rho);
    const double keep = rho_next * rho, gain = 2 * rho_next / delta;
    for_rows(g.ny, threads, [&](int iy) {
      const double* rr = lv.r.row(iy);
      const double* inv = lv.inv_diag.row(iy);
      double* dr = lv.d.row(iy);
      double* xr = x.row(iy);
      for (int ix = 0; ix < g.nx; ++ix) {
        dr[ix] = keep * dr[ix] + gain * inv[ix] * rr[ix];
        xr[ix] += dr[ix];
      }
    });
    rho = rho_next;
  }
  if (want_residual) lv.a.subtract_apply(lv.d, lv.r, threads);
}

void Multigrid::solve_coarsest(const Field& b, Field& x) {
  const GridLayout& g = b.layout();
  double* v = coarse_rhs_.data();
  for (int iy = 0; iy < g.ny; ++iy)
    for (int ix = 0; ix < g.nx; ++ix) v[int64_t{iy} * g.nx + ix] = b(ix, iy);
  coarsest_.solve(v, v);
  for (int iy = 0; iy < g.ny; ++iy)
    for (int ix = 0; ix < g.nx; ++ix) x(ix, iy) = v[int64_t{iy} * g.nx + ix];
}

void Multigrid::cycle(size_t level, const Field& b, Field& x) {
  if (level + 1 == levels_.size()) {
    solve_coarsest(b, x);
    return;
  }
  Level& lv = levels_[level];
  Level& next = levels_[level + 1];
  smooth(lv, b, x, /*from_zero=*/true, /*want_residual=*/true);
  transfers_[level].restrict_to(lv.r, next.b, lv.threads);
  cycle(level + 1, next.b, next.x);
  transfers_[level].prolong_add(next.x, x, lv.threads);
  smooth(lv, b, x, /*from_zero=*/false, /*want_residual=*/false);
}

void Multigrid::apply(const Field& r, Field& z) { cycle(0, r, z); }

}  // namespace pdegen::physics

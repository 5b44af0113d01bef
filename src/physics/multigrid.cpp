// Geometric multigrid V-cycle for the reference solver (see multigrid.hpp).
#include "physics/multigrid.hpp"

#include <utility>

#include "core/error.hpp"

namespace pdegen::physics {

Multigrid::Multigrid(int nx, int ny, bool threads, const MultigridOptions& options) : options_(options) {
  PDEGEN_CHECK(options.smoothing_degree >= 1, "Chebyshev degree must be >= 1, got {}",
               options.smoothing_degree);
  PDEGEN_CHECK(options.smoothing_range > 1, "smoothing range must be > 1, got {}", options.smoothing_range);
  auto add_level = [&](const GridLayout& g) {
    Level l;
    l.layout = g;
    l.threads = threads && g.worth_threads();
    if (levels_.empty()) l.a = StencilOperator(g, 1);  // coarse operators come from setup()
    l.inv_diag = Field(g);
    if (!levels_.empty()) {  // the finest level's right-hand side and solution are apply()'s arguments
      l.b = Field(g);
      l.x = Field(g);
    }
    l.r = Field(g);
    l.d = Field(g);
    levels_.push_back(std::move(l));
  };
  add_level(GridLayout(nx, ny));
  for (;;) {
    const GridLayout g = levels_.back().layout;  // a copy: add_level() moves the levels
    const int mx = g.nx - 1, my = g.ny - 1;
    if (g.nodes() <= options.coarsest_nodes || mx < 4 || my < 4) break;
    const GridLayout coarse((mx + 1) / 2 + 1, (my + 1) / 2 + 1);
    transfers_.emplace_back(g, coarse);
    add_level(coarse);
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
  // keeping the residual r = b - A x up to date with one product per step. From a zero start the
  // first step needs no product: x = d = D^-1 b / theta.
  const GridLayout& g = lv.layout;
  const bool threads = lv.threads;
  const int degree = options_.smoothing_degree;
  const double theta = 0.5 * (lv.upper + lv.lower), delta = 0.5 * (lv.upper - lv.lower);
  const double sigma = theta / delta;
  double rho = 1 / sigma;
  bool residual_known = !from_zero;
  if (residual_known) lv.a.residual(b, x, lv.r, threads);
  const Field& first = from_zero ? b : lv.r;  // the residual of the starting x
  const bool keep_step = degree > 1 || !from_zero;
  for_rows(g.ny, threads, [&](int iy) {
    const double* rr = first.row(iy);
    const double* inv = lv.inv_diag.row(iy);
    double* dr = lv.d.row(iy);
    double* xr = x.row(iy);
    for (int ix = 0; ix < g.nx; ++ix) {
      const double step = inv[ix] * rr[ix] / theta;
      if (keep_step) dr[ix] = step;
      xr[ix] = (from_zero ? 0.0 : xr[ix]) + step;
    }
  });
  // r = b - A x after the latest step: from b when no residual exists yet (x is then that step).
  auto update_residual = [&] {
    if (residual_known) {
      lv.a.subtract_apply(lv.d, lv.r, threads);
    } else {
      lv.a.residual(b, x, lv.r, threads);
      residual_known = true;
    }
  };
  for (int k = 1; k < degree; ++k) {
    update_residual();
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
  if (want_residual) update_residual();
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

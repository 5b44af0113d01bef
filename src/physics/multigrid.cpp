// Geometric multigrid V-cycle for the reference solver (see multigrid.hpp).
#include "physics/multigrid.hpp"

#include <utility>

#include "core/error.hpp"

namespace pdegen::physics {

template <int Dim>
Multigrid<Dim>::Multigrid(const Index<Dim>& nodes, bool threads, const MultigridOptions& options)
    : options_(options) {
  PDEGEN_CHECK(options.smoothing_degree >= 1, "Chebyshev degree must be >= 1, got {}",
               options.smoothing_degree);
  PDEGEN_CHECK(options.smoothing_range > 1, "smoothing range must be > 1, got {}", options.smoothing_range);
  auto add_level = [&](const GridLayout<Dim>& g) {
    Level l;
    l.layout = g;
    l.threads = threads && g.worth_threads();
    if (levels_.empty()) l.a = StencilOperator<Dim>(g, 1);  // coarse operators come from setup()
    l.inv_diag = Field<Dim>(g);
    if (!levels_.empty()) {  // the finest level's right-hand side and solution are apply()'s arguments
      l.b = Field<Dim>(g);
      l.x = Field<Dim>(g);
    }
    l.r = Field<Dim>(g);
    l.d = Field<Dim>(g);
    levels_.push_back(std::move(l));
  };
  add_level(GridLayout<Dim>(nodes));
  for (;;) {
    const GridLayout<Dim> g = levels_.back().layout;  // a copy: add_level() moves the levels
    bool too_small = g.nodes() <= options.coarsest_nodes;
    Index<Dim> coarse_nodes;
    for (int a = 0; a < Dim; ++a) {
      const int cells = g.n[a] - 1;
      too_small = too_small || cells < 4;
      coarse_nodes[a] = (cells + 1) / 2 + 1;
    }
    if (too_small) break;
    const GridLayout<Dim> coarse(coarse_nodes);
    transfers_.emplace_back(g, coarse);
    add_level(coarse);
  }
  coarse_rhs_.resize(static_cast<size_t>(levels_.back().layout.nodes()));
}

template <int Dim>
void Multigrid<Dim>::setup() {
  for (size_t l = 0; l + 1 < levels_.size(); ++l)
    levels_[l + 1].a = transfers_[l].galerkin(levels_[l].a, levels_[l].threads);
  for (size_t l = 0; l + 1 < levels_.size(); ++l) {
    Level& lv = levels_[l];
    const int nx = lv.layout.nx();
    for_lines(lv.layout.lines(), lv.threads, [&](int line) {
      const double* diag = lv.a.diagonal().line(line);
      double* inv = lv.inv_diag.line(line);
      for (int ix = 0; ix < nx; ++ix) inv[ix] = 1 / diag[ix];
    });
    lv.upper = lv.a.jacobi_gershgorin_bound(lv.threads);
    lv.lower = lv.upper / options_.smoothing_range;
  }
  const StencilOperator<Dim>& coarsest = levels_.back().a;
  coarsest_ = DenseCholesky(coarsest.to_dense(), static_cast<int>(coarsest.layout().nodes()));
}

template <int Dim>
void Multigrid<Dim>::smooth(Level& lv, const Field<Dim>& b, Field<Dim>& x, bool from_zero,
                            bool want_residual) {
  // Chebyshev iteration on D^-1 A for the interval [lower, upper] (Saad, Iterative Methods, alg. 12.1),
  // keeping the residual r = b - A x up to date with one product per step. From a zero start the
  // first step needs no product: x = d = D^-1 b / theta.
  const GridLayout<Dim>& g = lv.layout;
  const int nx = g.nx();
  const bool threads = lv.threads;
  const int degree = options_.smoothing_degree;
  const double theta = 0.5 * (lv.upper + lv.lower), delta = 0.5 * (lv.upper - lv.lower);
  const double sigma = theta / delta;
  double rho = 1 / sigma;
  bool residual_known = !from_zero;
  if (residual_known) lv.a.residual(b, x, lv.r, threads);
  const Field<Dim>& first = from_zero ? b : lv.r;  // the residual of the starting x
  const bool keep_step = degree > 1 || !from_zero;
  for_lines(g.lines(), threads, [&](int l) {
    const double* rr = first.line(l);
    const double* inv = lv.inv_diag.line(l);
    double* dr = lv.d.line(l);
    double* xr = x.line(l);
    for (int ix = 0; ix < nx; ++ix) {
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
    for_lines(g.lines(), threads, [&](int l) {
      const double* rr = lv.r.line(l);
      const double* inv = lv.inv_diag.line(l);
      double* dr = lv.d.line(l);
      double* xr = x.line(l);
      for (int ix = 0; ix < nx; ++ix) {
        dr[ix] = keep * dr[ix] + gain * inv[ix] * rr[ix];
        xr[ix] += dr[ix];
      }
    });
    rho = rho_next;
  }
  if (want_residual) update_residual();
}

template <int Dim>
void Multigrid<Dim>::solve_coarsest(const Field<Dim>& b, Field<Dim>& x) {
  const GridLayout<Dim>& g = b.layout();
  const int nx = g.nx();
  double* v = coarse_rhs_.data();
  for (int l = 0; l < g.lines(); ++l)
    for (int ix = 0; ix < nx; ++ix) v[int64_t{l} * nx + ix] = b.line(l)[ix];
  coarsest_.solve(v, v);
  for (int l = 0; l < g.lines(); ++l)
    for (int ix = 0; ix < nx; ++ix) x.line(l)[ix] = v[int64_t{l} * nx + ix];
}

template <int Dim>
void Multigrid<Dim>::cycle(size_t level, const Field<Dim>& b, Field<Dim>& x) {
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

template <int Dim>
void Multigrid<Dim>::apply(const Field<Dim>& r, Field<Dim>& z) {
  cycle(0, r, z);
}

template class Multigrid<2>;
template class Multigrid<3>;

}  // namespace pdegen::physics

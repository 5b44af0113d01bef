// Finite-volume reference solver for 1D Burgers' equation (see burgers_reference.hpp).
#include "physics/burgers_reference.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

#include "core/error.hpp"

namespace pdegen::physics {

double burgers_godunov_flux(double left, double right) {
  // f is convex with its minimum at u = 0, so the Riemann solution at x / t = 0 has the flux
  // max(f(max(left, 0)), f(min(right, 0))): f(left) for right-going waves, f(right) for left-going
  // ones, the shock's upwind side by the sign of its speed (left + right) / 2, and f(0) = 0 in a
  // transonic rarefaction (left < 0 < right).
  const double l = std::max(left, 0.0);
  const double r = std::min(right, 0.0);
  return 0.5 * std::max(l * l, r * r);
}

namespace {

using Kind = BurgersBoundary::Kind;

constexpr int64_t kGhosts = 2;  // MUSCL needs the slope of the first ghost, hence its neighbour

// Monotonised central limiter: the central slope unless a one-sided one, doubled, is smaller.
double mc_slope(double a, double b) {
  if (a * b <= 0) return 0;
  const double s = std::min({0.5 * std::abs(a + b), 2 * std::abs(a), 2 * std::abs(b)});
  return a > 0 ? s : -s;
}

double boundary_value(const BurgersBoundary& b, double t) { return b.value ? b.value(t) : 0.0; }

class BurgersFv {
 public:
  BurgersFv(const BurgersFvSettings& settings, int64_t cells);
  void set_initial(const std::function<double(double)>& b);
  void advance_to(double t_out);
  void sample(int nx, double* row);  // at the current time
  int64_t steps() const { return steps_; }
  double outflow() const { return outflow_; }
  double mass() const;

 private:
  double stable_step() const;
  void step(double dt);
  void fill_ghosts(std::vector<double>& u, double t) const;
  double advection_rate(std::vector<double>& u, double t);
  double diffusive_outflow(const std::vector<double>& u) const;
  void factor_implicit(double r);
  void solve_implicit(double r, double t, std::vector<double>& w);

  const BurgersFvSettings& s_;
  int64_t m_;
  double dx_;
  double t_ = 0;
  int64_t steps_ = 0;
  double outflow_ = 0;
  // Cell arrays with kGhosts ghosts per end (cell i at i + kGhosts); allocated once.
  std::vector<double> u_, stage_, slope_;
  std::vector<double> flux_, rate_, base_;       // M + 1 faces; M cells: A(u), the step's common part
  std::vector<double> tri_c_, tri_inv_, tri_d_;  // Thomas: c', 1 / pivot, d'
  double tri_r_ = -1;                            // the r that tri_c_, tri_inv_ were factored for
};

BurgersFv::BurgersFv(const BurgersFvSettings& settings, int64_t cells)
    : s_(settings), m_(cells), dx_(1.0 / static_cast<double>(cells)) {
  const auto n = static_cast<std::size_t>(cells);
  u_.assign(n + 2 * kGhosts, 0.0);
  stage_.assign(n + 2 * kGhosts, 0.0);
  slope_.assign(n + 2 * kGhosts, 0.0);
  flux_.assign(n + 1, 0.0);
  rate_.assign(n, 0.0);
  base_.assign(n, 0.0);
  tri_c_.assign(n, 0.0);
  tri_inv_.assign(n, 0.0);
  tri_d_.assign(n, 0.0);
}

void BurgersFv::set_initial(const std::function<double(double)>& b) {
  // 3-point Gauss-Legendre on each cell: exact for quintics, so O(dx^6) per cell for smooth b.
  const double xi = std::sqrt(0.6) * 0.5 * dx_;
  double* u = u_.data() + kGhosts;
  for (int64_t i = 0; i < m_; ++i) {
    const double c = (static_cast<double>(i) + 0.5) * dx_;
    u[i] = (5 * b(c - xi) + 8 * b(c) + 5 * b(c + xi)) / 18;
  }
}

double BurgersFv::mass() const {
  double sum = 0;
  for (int64_t i = 0; i < m_; ++i) sum += u_[static_cast<std::size_t>(i + kGhosts)];
  return sum * dx_;
}

void BurgersFv::fill_ghosts(std::vector<double>& u, double t) const {
  double* v = u.data() + kGhosts;
  // Dirichlet: odd reflection about g makes the linear interpolant through the face equal g;
  // zero gradient: even reflection makes it flat there.
  if (s_.left.kind == Kind::dirichlet) {
    const double g = boundary_value(s_.left, t);
    v[-1] = 2 * g - v[0];
    v[-2] = 2 * g - v[1];
  } else {
    v[-1] = v[0];
    v[-2] = v[1];
  }
  if (s_.right.kind == Kind::dirichlet) {
    const double g = boundary_value(s_.right, t);
    v[m_] = 2 * g - v[m_ - 1];
    v[m_ + 1] = 2 * g - v[m_ - 2];
  } else {
    v[m_] = v[m_ - 1];
    v[m_ + 1] = v[m_ - 2];
  }
}

// rate_ = -(F_{i+1/2} - F_{i-1/2}) / dx for u at time t; returns the net flux out of [0, 1].
double BurgersFv::advection_rate(std::vector<double>& u, double t) {
  fill_ghosts(u, t);
  const double* v = u.data() + kGhosts;
  double* sl = slope_.data() + kGhosts;
  for (int64_t i = -1; i <= m_; ++i) sl[i] = mc_slope(v[i] - v[i - 1], v[i + 1] - v[i]);
  for (int64_t k = 1; k < m_; ++k)
    flux_[static_cast<std::size_t>(k)] = burgers_godunov_flux(v[k - 1] + 0.5 * sl[k - 1], v[k] - 0.5 * sl[k]);
  // A Dirichlet end's outer Riemann state is g itself (weak imposition, see the header).
  const bool left_g = s_.left.kind == Kind::dirichlet, right_g = s_.right.kind == Kind::dirichlet;
  flux_.front() =
      burgers_godunov_flux(left_g ? boundary_value(s_.left, t) : v[-1] + 0.5 * sl[-1], v[0] - 0.5 * sl[0]);
  flux_.back() = burgers_godunov_flux(v[m_ - 1] + 0.5 * sl[m_ - 1],
                                      right_g ? boundary_value(s_.right, t) : v[m_] - 0.5 * sl[m_]);
  const double inv_dx = 1 / dx_;
  for (std::size_t i = 0; i < rate_.size(); ++i) rate_[i] = (flux_[i] - flux_[i + 1]) * inv_dx;
  return flux_.back() - flux_.front();
}

// (v_0 - ghost) - (ghost - v_{M-1}): the net outflow of -u_x through both ends, ghosts filled.
double BurgersFv::diffusive_outflow(const std::vector<double>& u) const {
  const double* v = u.data() + kGhosts;
  return (v[0] - v[-1]) - (v[m_] - v[m_ - 1]);
}

// The Thomas factorisation of I - r L, L the second difference with the boundary rows' ghosts
// folded in (odd reflection: -3 on the diagonal; even reflection: -1). Redone only when r changes.
void BurgersFv::factor_implicit(double r) {
  const bool left_g = s_.left.kind == Kind::dirichlet, right_g = s_.right.kind == Kind::dirichlet;
  double c_prev = 0;
  for (int64_t i = 0; i < m_; ++i) {
    double a = 1 + 2 * r;
    if (i == 0) a += left_g ? r : -r;
    if (i == m_ - 1) a += right_g ? r : -r;
    const double inv = 1 / (a + r * c_prev);
    tri_inv_[static_cast<std::size_t>(i)] = inv;
    tri_c_[static_cast<std::size_t>(i)] = c_prev = -r * inv;
  }
  tri_r_ = r;
}

// Solves (I - r L) w = rhs, rhs in w's cells on entry, with the Dirichlet ghosts' 2 g(t) moved to
// the right-hand side: the implicit half of the trapezoidal rule at the stage's time t.
void BurgersFv::solve_implicit(double r, double t, std::vector<double>& w) {
  if (r != tri_r_) factor_implicit(r);
  double* v = w.data() + kGhosts;
  if (s_.left.kind == Kind::dirichlet) v[0] += 2 * r * boundary_value(s_.left, t);
  if (s_.right.kind == Kind::dirichlet) v[m_ - 1] += 2 * r * boundary_value(s_.right, t);
  double d_prev = 0;
  for (int64_t i = 0; i < m_; ++i) {
    const auto k = static_cast<std::size_t>(i);
    tri_d_[k] = d_prev = (v[i] + r * d_prev) * tri_inv_[k];
  }
  v[m_ - 1] = tri_d_.back();
  for (int64_t i = m_ - 2; i >= 0; --i)
    v[i] = tri_d_[static_cast<std::size_t>(i)] - tri_c_[static_cast<std::size_t>(i)] * v[i + 1];
}

// One step of the IMEX trapezoidal rule, A the advection rate, D = nu L / dx^2 the diffusion:
//   u* = u + dt A(u) + dt/2 (D u + D u*),   u' = u + dt/2 (A(u) + A(u*)) + dt/2 (D u + D u').
// Second order, and for nu = 0 exactly SSP-RK2 (Heun), which is TVD with MUSCL for CFL <= 1/2.
// Unsplit, so every stage solves the whole problem with the boundary data of its own time: in a
// split step neither flow alone is compatible with g(t) or u_x = 0, which cost Strang an order.
void BurgersFv::step(double dt) {
  const double r = 0.5 * s_.viscosity * dt / (dx_ * dx_);
  const double out_a = advection_rate(u_, t_);  // fills u_'s ghosts at t for L u too
  const double out_d = diffusive_outflow(u_);
  const double* v = u_.data() + kGhosts;
  double* w = stage_.data() + kGhosts;
  for (int64_t i = 0; i < m_; ++i) {
    const auto k = static_cast<std::size_t>(i);
    base_[k] = v[i] + 0.5 * dt * rate_[k] + r * (v[i - 1] - 2 * v[i] + v[i + 1]);
    w[i] = base_[k] + 0.5 * dt * rate_[k];
  }
  if (r > 0) solve_implicit(r, t_ + dt, stage_);
  const double out_b = advection_rate(stage_, t_ + dt);
  double* u = u_.data() + kGhosts;
  for (int64_t i = 0; i < m_; ++i)
    u[i] = base_[static_cast<std::size_t>(i)] + 0.5 * dt * rate_[static_cast<std::size_t>(i)];
  if (r > 0) solve_implicit(r, t_ + dt, u_);
  fill_ghosts(u_, t_ + dt);
  // Net flux out: the trapezoidal weights of the final update (the stage's diffusion is not in it).
  outflow_ += 0.5 * dt * (out_a + out_b) + r * dx_ * (out_d + diffusive_outflow(u_));
}

double BurgersFv::stable_step() const {
  double umax = 0;
  for (int64_t i = 0; i < m_; ++i) umax = std::max(umax, std::abs(u_[static_cast<std::size_t>(i + kGhosts)]));
  if (s_.left.kind == Kind::dirichlet) umax = std::max(umax, std::abs(boundary_value(s_.left, t_)));
  if (s_.right.kind == Kind::dirichlet) umax = std::max(umax, std::abs(boundary_value(s_.right, t_)));
  PDEGEN_CHECK(std::isfinite(umax), "Burgers reference: the solution is not finite at t = {}", t_);
  // u = 0 everywhere (and at the ends) does not move: the next output time bounds the step.
  return umax > 0 ? s_.cfl * dx_ / umax : std::numeric_limits<double>::infinity();
}

void BurgersFv::advance_to(double t_out) {
  while (t_ < t_out) {
    double dt = stable_step();
    // Land on t_out exactly; a step within a relative 1e-9 of the rest takes the rest, not a sliver.
    const bool last = t_out - t_ <= dt * (1 + 1e-9);
    if (last) dt = t_out - t_;
    step(dt);
    t_ = last ? t_out : t_ + dt;
    ++steps_;
  }
}

void BurgersFv::sample(int nx, double* row) {
  // Node j is face j * refinement; the mean of its two cells (ghosts at the ends) is the linear
  // interpolant between the cell centres, g at a Dirichlet end, the last cell at a zero-gradient end.
  fill_ghosts(u_, t_);
  const double* v = u_.data() + kGhosts;
  const int64_t r = s_.refinement;
  for (int j = 0; j < nx; ++j) row[j] = 0.5 * (v[j * r - 1] + v[j * r]);
}

void validate(const std::function<double(double)>& initial, int nx, int nt, const BurgersFvSettings& s) {
  PDEGEN_CHECK(static_cast<bool>(initial), "Burgers reference: no initial condition given");
  PDEGEN_CHECK(nx >= 2, "Burgers reference: need nx >= 2 nodes in x, got {}", nx);
  PDEGEN_CHECK(nt >= 2, "Burgers reference: need nt >= 2 nodes in t, got {}", nt);
  PDEGEN_CHECK(s.refinement >= 4, "Burgers reference: refinement must be >= 4, got {}", s.refinement);
  PDEGEN_CHECK(s.cfl > 0 && s.cfl <= 0.5, "Burgers reference: cfl must be in (0, 0.5], got {}", s.cfl);
  PDEGEN_CHECK(s.viscosity >= 0 && std::isfinite(s.viscosity),
               "Burgers reference: viscosity must be finite and >= 0, got {}", s.viscosity);
  PDEGEN_CHECK(s.t_final > 0 && std::isfinite(s.t_final),
               "Burgers reference: t_final must be finite and > 0, got {}", s.t_final);
}

}  // namespace

std::vector<double> solve_burgers_fv(const std::function<double(double)>& initial, int nx, int nt,
                                     const BurgersFvSettings& settings, BurgersFvReport* report) {
  validate(initial, nx, nt, settings);
  BurgersFv fv(settings, static_cast<int64_t>(settings.refinement) * (nx - 1));
  fv.set_initial(initial);
  const double mass_initial = fv.mass();
  std::vector<double> out(static_cast<std::size_t>(nt) * static_cast<std::size_t>(nx));
  for (int j = 0; j < nx; ++j) out[static_cast<std::size_t>(j)] = initial(static_cast<double>(j) / (nx - 1));
  for (int n = 1; n < nt; ++n) {
    // The last row at T itself, whatever n T / (nt - 1) rounds to.
    fv.advance_to(n == nt - 1 ? settings.t_final : n * settings.t_final / (nt - 1));
    fv.sample(nx, out.data() + static_cast<std::size_t>(n) * static_cast<std::size_t>(nx));
  }
  if (report != nullptr) {
    report->steps = fv.steps();
    report->cells = static_cast<int64_t>(settings.refinement) * (nx - 1);
    report->mass_initial = mass_initial;
    report->mass_final = fv.mass();
    report->outflow = fv.outflow();
  }
  return out;
}

}  // namespace pdegen::physics

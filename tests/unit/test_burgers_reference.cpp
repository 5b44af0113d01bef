// The burgers1d finite-volume reference (physics/burgers_reference.hpp) against exact solutions:
// Cole-Hopf and a travelling viscous shock (viscous), a linear solution (the time error and the
// boundary data's timing), characteristics (inviscid, smooth), a shock and rarefactions (the entropy
// solution), each with its observed convergence order; then bounds and conservation on the
// product's case with shocks, the time sampling, and the input checks.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <numbers>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "physics/burgers_reference.hpp"

using namespace pdegen;
using namespace pdegen::physics;

namespace {

constexpr double pi = std::numbers::pi;
using Profile = std::function<double(double)>;
using Vec = std::vector<double>;

BurgersBoundary dirichlet(double g) {
  return {BurgersBoundary::Kind::dirichlet, [g](double) { return g; }};
}

BurgersBoundary zero_gradient() { return {BurgersBoundary::Kind::zero_gradient, {}}; }

double node_x(int j, int nx) { return static_cast<double>(j) / (nx - 1); }

// Row n of an [nt][nx] solution.
Vec row(const Vec& u, int nx, int n) {
  const auto begin = u.begin() + static_cast<std::ptrdiff_t>(n) * nx;
  return {begin, begin + nx};
}

// The solution at t = T alone.
Vec final_row(const Profile& b, int nx, const BurgersFvSettings& s, BurgersFvReport* report = nullptr) {
  return row(solve_burgers_fv(b, nx, 2, s, report), nx, 1);
}

double max_error(const Vec& u, const Profile& exact) {
  const int nx = static_cast<int>(u.size());
  double e = 0;
  for (int j = 0; j < nx; ++j)
    e = std::max(e, std::abs(u[static_cast<std::size_t>(j)] - exact(node_x(j, nx))));
  return e;
}

// The trapezoid rule over the nodes; with exact(x) the L1 error.
double trapezoid(const Vec& u, double span = 1) {
  double s = 0;
  for (std::size_t j = 0; j < u.size(); ++j) s += (j == 0 || j + 1 == u.size() ? 0.5 : 1.0) * u[j];
  return s * span / static_cast<double>(u.size() - 1);
}

double l1_error(const Vec& u, const Profile& exact) {
  const int nx = static_cast<int>(u.size());
  Vec e(u.size());
  for (int j = 0; j < nx; ++j)
    e[static_cast<std::size_t>(j)] = std::abs(u[static_cast<std::size_t>(j)] - exact(node_x(j, nx)));
  return trapezoid(e);
}

double total_variation(const Vec& u) {
  double tv = 0;
  for (std::size_t j = 1; j < u.size(); ++j) tv += std::abs(u[j] - u[j - 1]);
  return tv;
}

// Observed orders log2(e_k / e_{k+1}) on grids whose spacing halves.
Vec orders(const Vec& errors) {
  Vec p;
  for (std::size_t k = 1; k < errors.size(); ++k) p.push_back(std::log2(errors[k - 1] / errors[k]));
  return p;
}

std::string table(const std::vector<int>& grids, const Vec& errors, const char* label = "nx") {
  std::ostringstream out;
  const Vec p = orders(errors);
  for (std::size_t k = 0; k < grids.size(); ++k) {
    out << label << " = " << grids[k] << ": error " << errors[k];
    if (k > 0) out << ", order " << p[k - 1];
    out << "\n";
  }
  return out.str();
}

void check_orders(const Vec& errors, double at_least) {
  for (double p : orders(errors)) CHECK(p > at_least);
}

// u = -2 nu theta_x / theta, theta = a + b exp(-nu pi^2 t) cos(pi x): theta solves the heat equation,
// so u solves viscous Burgers (Cole-Hopf), and u = 0 at x = 0 and x = 1.
struct ColeHopf {
  double nu = 0.05, a = 2, b = 1;
  double operator()(double x, double t) const {
    const double e = b * std::exp(-nu * pi * pi * t);
    return 2 * nu * pi * e * std::sin(pi * x) / (a + e * std::cos(pi * x));
  }
};

double one_hump(double x) { return 0.5 * (1 - std::cos(2 * pi * x)); }

// Inviscid u = b(x0) along x = x0 + b(x0) t. Before the shock time 1/pi, x0 + b(x0) t is increasing
// (t b' >= -t pi > -1), so bisection on [0, x] finds the foot x0 >= 0 of every x in [0, 1]: no node's
// characteristic comes from the inflow boundary (b(0) = 0), and the outflow does not act on the interior.
double characteristics(double x, double t) {
  double lo = 0, hi = x;
  for (int k = 0; k < 100; ++k) {
    const double mid = 0.5 * (lo + hi);
    (mid + one_hump(mid) * t < x ? lo : hi) = mid;
  }
  return one_hump(0.5 * (lo + hi));
}

}  // namespace

TEST_CASE("the Godunov flux is the flux of the exact Riemann solution at x / t = 0") {
  CHECK(burgers_godunov_flux(1, 2) == 0.5);    // right-going rarefaction: f(left)
  CHECK(burgers_godunov_flux(-2, -1) == 0.5);  // left-going rarefaction: f(right)
  CHECK(burgers_godunov_flux(-1, 2) == 0);     // transonic rarefaction: the sonic state u = 0
  CHECK(burgers_godunov_flux(2, -1) == 2);     // shock with speed 1/2 > 0: f(left)
  CHECK(burgers_godunov_flux(1, -2) == 2);     // shock with speed -1/2 < 0: f(right)
  CHECK(burgers_godunov_flux(1, 0) == 0.5);    // the product's shocks: f(left)
  CHECK(burgers_godunov_flux(0.3, 0.3) == doctest::Approx(0.045).epsilon(1e-15));
}

TEST_CASE("viscous: second order against the Cole-Hopf solution, Dirichlet 0 at both ends") {
  const ColeHopf exact;
  BurgersFvSettings s;
  s.viscosity = exact.nu;
  s.t_final = 0.5;
  s.left = dirichlet(0);
  s.right = dirichlet(0);
  const std::vector<int> grids = {17, 33, 65, 129};
  Vec errors;
  for (int nx : grids) {
    BurgersFvReport report;
    const Vec u = final_row([&](double x) { return exact(x, 0); }, nx, s, &report);
    errors.push_back(max_error(u, [&](double x) { return exact(x, s.t_final); }));
    CHECK(report.cells == 8 * (nx - 1));
    CHECK(std::abs(report.mass_final - (report.mass_initial - report.outflow)) < 1e-12);
  }
  MESSAGE("Cole-Hopf, nu = 0.05, T = 0.5, refinement 8, max norm at the nodes:\n" << table(grids, errors));
  CHECK(errors.back() < 1e-6);
  check_orders(errors, 1.7);
}

TEST_CASE("viscous: second order with time-dependent Dirichlet data and with the zero-gradient outflow") {
  SUBCASE("a travelling viscous shock, second order with g(t) at both ends") {
    // u = 1/2 - 1/2 tanh((x - x0 - t / 2) / (4 nu)) solves viscous Burgers: the wave from 1 to 0 at
    // the shock speed 1/2. Its values at x = 0 and x = 1 change with t.
    const double nu = 0.05, x0 = 0.1;
    const auto exact = [&](double x, double t) {
      return 0.5 - 0.5 * std::tanh((x - x0 - 0.5 * t) / (4 * nu));
    };
    BurgersFvSettings s;
    s.viscosity = nu;
    s.t_final = 0.5;
    s.left = {BurgersBoundary::Kind::dirichlet, [&](double t) { return exact(0, t); }};
    s.right = {BurgersBoundary::Kind::dirichlet, [&](double t) { return exact(1, t); }};
    const std::vector<int> grids = {17, 33, 65, 129};
    Vec errors;
    for (int nx : grids) {
      const Vec u = final_row([&](double x) { return exact(x, 0); }, nx, s);
      errors.push_back(max_error(u, [&](double x) { return exact(x, s.t_final); }));
    }
    MESSAGE("viscous shock, nu = 0.05, T = 0.5, Dirichlet g(t), max norm at the nodes:\n"
            << table(grids, errors));
    CHECK(errors.back() < 1e-4);
    check_orders(errors, 1.7);
  }
  SUBCASE("the product's viscous case (c = 3, nu = 0.01) converges at second order, outflow included") {
    // No closed form: errors against refinement 64 on the same nodes, all nodes and times. Strang
    // splitting reached only orders 1.67 and 1.18 here: within a split step the advection flow does
    // not keep u_x = 0 at the outflow, and the diffusion flow then restores it in a boundary layer.
    const auto b = [](double x) { return 0.5 * (1 - std::cos(2 * pi * 3 * x)); };
    BurgersFvSettings s;
    s.viscosity = 0.01;
    const int nx = 65, nt = 17;
    s.refinement = 64;
    const Vec reference = solve_burgers_fv(b, nx, nt, s);
    const std::vector<int> refinements = {4, 8, 16};
    Vec errors;
    for (int r : refinements) {
      s.refinement = r;
      const Vec u = solve_burgers_fv(b, nx, nt, s);
      double e = 0;
      for (std::size_t i = 0; i < u.size(); ++i) e = std::max(e, std::abs(u[i] - reference[i]));
      errors.push_back(e);
    }
    MESSAGE(
        "c = 3, nu = 0.01, nx = 65, nt = 17, refinement 4, 8, 16 against 64, max norm over the "
        "space-time nodes:\n"
        << table(refinements, errors, "refinement"));
    check_orders(errors, 1.7);
  }
  SUBCASE("a constant inflow state is steady with zero gradient at the outflow") {
    BurgersFvSettings s;
    s.viscosity = 0.1;
    s.left = dirichlet(0.7);
    s.right = zero_gradient();
    const Vec u = solve_burgers_fv([](double) { return 0.7; }, 17, 5, s);
    for (double v : u) CHECK(std::abs(v - 0.7) < 1e-14);
  }
}

TEST_CASE("u = (x + 1/2) / (t + 1), Dirichlet g(t) at both ends: exact in space, second order in time") {
  // Linear in x, so u_xx = 0 and it solves Burgers' equation for every nu; MUSCL reconstructs it
  // exactly, leaving the time error, to which boundary data taken at the wrong stage time add O(dt).
  const auto exact = [](double x, double t) { return (x + 0.5) / (t + 1); };
  for (double nu : {0.0, 0.05}) {
    BurgersFvSettings s;
    s.viscosity = nu;
    s.t_final = 1;
    s.left = {BurgersBoundary::Kind::dirichlet, [&](double t) { return exact(0, t); }};
    s.right = {BurgersBoundary::Kind::dirichlet, [&](double t) { return exact(1, t); }};
    const int nt = 5;
    const std::vector<int> grids = {17, 33, 65, 129};
    Vec errors;
    for (int nx : grids) {
      const Vec u = solve_burgers_fv([&](double x) { return exact(x, 0); }, nx, nt, s);
      double e = 0;
      for (int n = 0; n < nt; ++n)
        e = std::max(e,
                     max_error(row(u, nx, n), [&](double x) { return exact(x, n * s.t_final / (nt - 1)); }));
      errors.push_back(e);
    }
    MESSAGE("u = (x + 1/2) / (t + 1), nu = " << nu << ", T = 1, max norm over the space-time nodes:\n"
                                             << table(grids, errors));
    CHECK(errors.back() < 1e-7);
    check_orders(errors, 1.7);
  }
}

TEST_CASE("inviscid, smooth (before the shock): second order in L1 against the characteristics") {
  BurgersFvSettings s;
  s.t_final = 0.2;  // the shock forms at 1 / pi
  s.left = dirichlet(0);
  s.right = zero_gradient();
  const std::vector<int> grids = {33, 65, 129, 257};
  Vec l1, max;
  for (int nx : grids) {
    const Vec u = final_row(one_hump, nx, s);
    const auto exact = [&](double x) { return characteristics(x, s.t_final); };
    l1.push_back(l1_error(u, exact));
    max.push_back(max_error(u, exact));
  }
  // The limiter clips the moving maximum (u = 1 at x = 0.5 + T) to first order locally: the max norm
  // converges irregularly there, the L1 norm at second order.
  MESSAGE("b = (1 - cos 2 pi x) / 2, nu = 0, T = 0.2, L1 at the nodes:\n" << table(grids, l1));
  MESSAGE("max norm (not asserted):\n" << table(grids, max));
  CHECK(max.back() < 1e-4);
  check_orders(l1, 1.5);
}

TEST_CASE("inviscid Riemann shock: the right speed, L1 error of order 1") {
  BurgersFvSettings s;
  s.t_final = 0.4;
  s.left = dirichlet(1);
  s.right = zero_gradient();
  const double shock = 0.25 + 0.5 * s.t_final;  // speed (1 + 0) / 2
  // 0.45 is a node on every grid: the nodes see the numerical shock profile (a fixed number of fine
  // cells wide) at the same place on each grid, so the L1 error is h times a constant. The exact
  // value at the shock itself is taken as the mean of the two states.
  const std::vector<int> grids = {21, 41, 81, 161};
  Vec l1;
  for (int nx : grids) {
    const Vec u = final_row([](double x) { return x < 0.25 ? 1.0 : 0.0; }, nx, s);
    const double h = 1.0 / (nx - 1);
    const auto exact = [&](double x) { return std::abs(x - shock) < 1e-12 ? 0.5 : (x < shock ? 1.0 : 0.0); };
    l1.push_back(l1_error(u, exact));
    double crossing = -1;
    for (int j = 1; j < nx; ++j) {
      const double a = u[static_cast<std::size_t>(j - 1)], b = u[static_cast<std::size_t>(j)];
      if (a >= 0.5 && b < 0.5) crossing = node_x(j - 1, nx) + h * (a - 0.5) / (a - b);
    }
    CHECK(std::abs(crossing - shock) < h);
    // Two network cells from the shock the states are exact: no oscillations, nothing ahead of it.
    for (int j = 0; j < nx; ++j)
      if (std::abs(node_x(j, nx) - shock) > 2 * h)
        CHECK(std::abs(u[static_cast<std::size_t>(j)] - exact(node_x(j, nx))) < 1e-9);
  }
  MESSAGE("shock 1 | 0 from x = 0.25, T = 0.4, L1 at the nodes:\n" << table(grids, l1));
  check_orders(l1, 0.7);
}

TEST_CASE("inviscid rarefactions are fans, not expansion shocks") {
  SUBCASE("0 | 1 from x = 0.25, the product's boundaries: L1 error small, converging") {
    BurgersFvSettings s;
    s.t_final = 0.3;
    s.left = dirichlet(0);
    s.right = zero_gradient();
    const auto exact = [&](double x) { return std::clamp((x - 0.25) / s.t_final, 0.0, 1.0); };
    const std::vector<int> grids = {33, 65, 129, 257};
    Vec l1;
    for (int nx : grids) {
      const Vec u = final_row([](double x) { return x < 0.25 ? 0.0 : 1.0; }, nx, s);
      l1.push_back(l1_error(u, exact));
      // The fan's slope is 1 / T; an expansion shock would be a jump of up to 1 between two nodes.
      const double h = 1.0 / (nx - 1);
      for (std::size_t j = 1; j < u.size(); ++j) CHECK(std::abs(u[j] - u[j - 1]) <= 1.01 * h / s.t_final);
    }
    MESSAGE("rarefaction 0 | 1 from x = 0.25, T = 0.3, L1 at the nodes:\n" << table(grids, l1));
    CHECK(l1.back() < 3e-4);
    check_orders(l1, 0.8);
  }
  SUBCASE("transonic -1 | 1 from x = 0.5: the sonic point u = 0 stays at x = 0.5") {
    BurgersFvSettings s;
    s.t_final = 0.3;
    s.left = dirichlet(-1);  // both ends are outflow here
    s.right = dirichlet(1);
    const int nx = 65;
    const Vec u = final_row([](double x) { return x < 0.5 ? -1.0 : 1.0; }, nx, s);
    CHECK(std::abs(u[nx / 2]) < 1e-12);  // symmetric data, symmetric solution
    CHECK(l1_error(u, [&](double x) { return std::clamp((x - 0.5) / s.t_final, -1.0, 1.0); }) < 2e-3);
    for (std::size_t j = 1; j < u.size(); ++j) CHECK(u[j] - u[j - 1] <= 1.01 * (1.0 / (nx - 1)) / s.t_final);
  }
}

TEST_CASE("the product's case with shocks (c = 3): bounds, and mass changes only through the ends") {
  const auto b = [](double x) { return 0.5 * (1 - std::cos(2 * pi * 3 * x)); };
  BurgersFvSettings s;  // nu = 0, T = 0.5, Dirichlet 0 at x = 0, zero gradient at x = 1
  const int nx = 128, nt = 128;
  BurgersFvReport report;
  const Vec u = solve_burgers_fv(b, nx, nt, s, &report);
  CHECK(report.cells == 8 * 127);
  // MUSCL-MC with SSP-RK2 at CFL 1/2 is TVD: no new extrema, so u stays in [min b, max b] = [0, 1].
  CHECK(*std::min_element(u.begin(), u.end()) >= -1e-12);
  CHECK(*std::max_element(u.begin(), u.end()) <= 1 + 1e-12);
  // The scheme itself is conservative: its mass changes by its boundary fluxes to rounding.
  CHECK(report.mass_initial == doctest::Approx(0.5).epsilon(1e-12));  // the integral of b
  CHECK(std::abs(report.mass_final - (report.mass_initial - report.outflow)) < 1e-12);
  // The same balance from the samples alone: the integral at T equals the initial one minus the time
  // integral of the outflow u(1, t)^2 / 2 (no flux at x = 0, where u = 0). The trapezoid rule errs by
  // at most h / 2 times a profile's total variation (on each interval the integral lies between h min
  // and h max, the rule at their mean), which shocks make the leading term; likewise in t for the
  // outflow, whose kinks are the shocks leaving. b itself is periodic on [0, 1]: its rule is exact.
  Vec outflow(nt);
  for (int n = 0; n < nt; ++n)
    outflow[static_cast<std::size_t>(n)] = 0.5 * std::pow(u[static_cast<std::size_t>(n * nx + nx - 1)], 2);
  const Vec last = row(u, nx, nt - 1);
  const double balance = trapezoid(last) - (trapezoid(row(u, nx, 0)) - trapezoid(outflow, s.t_final));
  const double bound =
      0.5 / (nx - 1) * total_variation(last) + 0.5 * s.t_final / (nt - 1) * total_variation(outflow);
  MESSAGE("c = 3, nu = 0, T = 0.5: mass "
          << report.mass_initial << " -> " << report.mass_final << ", outflow " << report.outflow
          << "; from the samples: imbalance " << balance << " (bound " << bound << "); " << report.steps
          << " steps");
  CHECK(std::abs(balance) <= bound);
  // The scheme's own outflow against the trapezoid rule in t of the sampled one, by the same bound.
  const double outflow_bound = 0.5 * s.t_final / (nt - 1) * total_variation(outflow);
  CHECK(std::abs(report.outflow - trapezoid(outflow, s.t_final)) <= outflow_bound);

  SUBCASE("viscous: the diffusive fluxes through the ends are accounted too") {
    BurgersFvSettings v = s;
    v.viscosity = 0.01;
    BurgersFvReport r;
    solve_burgers_fv(b, nx, nt, v, &r);
    CHECK(std::abs(r.mass_final - (r.mass_initial - r.outflow)) < 1e-12);
  }
}

TEST_CASE("time sampling: row 0 is b, steps land on the output times: invalid input throws") {
  const auto b = [](double x) { return 0.5 * (1 - std::cos(2 * pi * 3 * x)); };
  BurgersFvSettings s;
  s.viscosity = 0.01;
  const int nx = 33;
  const Vec u = solve_burgers_fv(b, nx, 3, s);
  for (int j = 0; j < nx; ++j) CHECK(u[static_cast<std::size_t>(j)] == b(node_x(j, nx)));
  // Up to T / 2 a run with outputs at T / 2 and T takes the very steps of a run that ends at T / 2.
  BurgersFvSettings half = s;
  half.t_final = s.t_final / 2;
  CHECK(row(u, nx, 1) == row(solve_burgers_fv(b, nx, 2, half), nx, 1));

  // nt = 3 and nt = 5 share the steps up to T / 4, then differ in the step lengths only (nt = 5 cuts
  // one short to land on T / 4 and one on 3T / 4): the answers at T differ by a part of the time
  // discretisation error, not by rounding alone, so the bound is 5% of the error against the exact
  // solution (the difference is 0.2% of it here). One step past an output time would be ~1e-4.
  const ColeHopf exact;
  BurgersFvSettings ch;
  ch.viscosity = exact.nu;
  ch.right = dirichlet(0);
  const auto b_ch = [&](double x) { return exact(x, 0); };
  const Vec at3 = row(solve_burgers_fv(b_ch, nx, 3, ch), nx, 2);
  const Vec at5 = row(solve_burgers_fv(b_ch, nx, 5, ch), nx, 4);
  double diff = 0;
  for (int j = 0; j < nx; ++j)
    diff = std::max(diff, std::abs(at3[static_cast<std::size_t>(j)] - at5[static_cast<std::size_t>(j)]));
  const double error = max_error(at3, [&](double x) { return exact(x, ch.t_final); });
  MESSAGE("nt = 3 vs nt = 5 at T: " << diff << ", error against Cole-Hopf " << error);
  CHECK(diff <= 0.05 * error);

  auto with = [&](auto change) {
    BurgersFvSettings bad = s;
    change(bad);
    return bad;
  };
  CHECK_THROWS_AS(solve_burgers_fv(b, nx, 3, with([](auto& x) { x.refinement = 2; })), pdegen::Error);
  CHECK_THROWS_AS(solve_burgers_fv(b, nx, 3, with([](auto& x) { x.cfl = 0.6; })), pdegen::Error);
  CHECK_THROWS_AS(solve_burgers_fv(b, nx, 3, with([](auto& x) { x.cfl = 0; })), pdegen::Error);
  CHECK_THROWS_AS(solve_burgers_fv(b, nx, 3, with([](auto& x) { x.viscosity = -1; })), pdegen::Error);
  CHECK_THROWS_AS(solve_burgers_fv(b, nx, 3, with([](auto& x) { x.t_final = 0; })), pdegen::Error);
  CHECK_THROWS_AS(solve_burgers_fv(b, 1, 3, s), pdegen::Error);
  CHECK_THROWS_AS(solve_burgers_fv(b, nx, 1, s), pdegen::Error);
  CHECK_THROWS_AS(solve_burgers_fv(Profile{}, nx, 3, s), pdegen::Error);
}

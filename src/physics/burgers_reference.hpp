// The classical reference for burgers1d (docs/theory.md, "The finite-volume reference"): 1D Burgers'
// equation u_t + (u^2/2)_x = nu u_xx on [0, 1] x [0, T], nu >= 0, solved by finite volumes and
// sampled at the network's space-time nodes, against which the networks' error is measured.
//
// - Cells: M = refinement * (nx - 1) uniform cells, so every network node x_j = j / (nx - 1) is a
//   cell face. Initial cell averages by 3-point Gauss-Legendre quadrature of b on each cell.
// - Advection: Godunov's flux with the exact Riemann solution of the convex flux u^2/2 (the entropy
//   solution: shocks, rarefactions, sonic points), MUSCL reconstruction with the MC limiter.
// - Time: the IMEX trapezoidal rule, advection by Heun's method (SSP-RK2) and diffusion by
//   Crank-Nicolson (a tridiagonal Thomas solve per stage), so only advection limits the step:
//   CFL * dx / max|u|, max|u| recomputed every step. For nu = 0 it is exactly SSP-RK2, TVD for
//   CFL <= 1/2. Unsplit rather than Strang-split: splitting lost an order to the boundaries (1.4 with
//   time-dependent Dirichlet data, 1.2 to 1.7 with the zero-gradient outflow); this keeps order 2.
// - Boundaries: two ghost cells per end. Dirichlet g(t): odd reflection about g (ghost = 2g - u), so
//   the face value is g for slopes, diffusion and sampling, and the boundary face's outer Riemann
//   state is g itself (weak imposition: an inflow takes the flux f(g), an outflow ignores g).
//   Zero gradient: even reflection (ghost = u), u_x = 0 at the face in both parts.
// - Output: steps are shortened to land exactly on t_n = n T / (nt - 1); at a node the value is the
//   mean of the two cells sharing that face (linear interpolation between cell centres), which at a
//   Dirichlet end is g(t) and at a zero-gradient end the last cell's average. Row 0 is b(x_j) itself.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace pdegen::physics {

struct BurgersBoundary {
  enum class Kind { dirichlet, zero_gradient };
  Kind kind = Kind::dirichlet;
  std::function<double(double)> value;  // g(t), dirichlet only; empty means g = 0
};

struct BurgersFvSettings {
  double viscosity = 0.0;  // nu >= 0; 0 is inviscid
  double t_final = 0.5;    // T > 0
  int refinement = 8;      // fine cells per network cell, >= 4
  double cfl = 0.5;        // in (0, 0.5]: max|u| dt / dx
  // The product's problem: no inflow at x = 0, free outflow at x = 1.
  BurgersBoundary left{BurgersBoundary::Kind::dirichlet, {}};
  BurgersBoundary right{BurgersBoundary::Kind::zero_gradient, {}};
};

struct BurgersFvReport {
  int64_t steps = 0;  // time steps (each two stages; for nu > 0 each stage one tridiagonal solve)
  int64_t cells = 0;  // M
  // Total mass, the integral of u over [0, 1] from the cell averages, at t = 0 and t = T, and the
  // time integral of the net flux out through both ends (advective plus diffusive) as the scheme
  // computed it: mass_final = mass_initial - outflow up to rounding, the scheme being conservative.
  double mass_initial = 0;
  double mass_final = 0;
  double outflow = 0;
};

// Godunov's flux for f(u) = u^2 / 2: f of the exact Riemann solution of (left, right) at x / t = 0.
double burgers_godunov_flux(double left, double right);

// The solution at the nodes x_j = j / (nx - 1) and times t_n = n T / (nt - 1), row-major [nt][nx]
// (x fastest), for u(x, 0) = initial(x). Throws pdegen::Error on invalid input (nx, nt < 2,
// refinement < 4, cfl outside (0, 0.5], nu < 0, T <= 0, no initial condition) or a non-finite
// solution.
std::vector<double> solve_burgers_fv(const std::function<double(double)>& initial, int nx, int nt,
                                     const BurgersFvSettings& settings, BurgersFvReport* report = nullptr);

}  // namespace pdegen::physics

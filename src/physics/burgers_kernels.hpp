// The Q1 space-time arithmetic of the burgers1d losses, written once for the CPU loops and the CUDA
// kernels. A field is one sample's nodal u, row-major [nt][nx] (x fastest), node (n, j) at
// (x, t) = (j hx, n ht). Element (en, ej) spans nodes en..en+1 in t and ej..ej+1 in x; its local
// node k has offsets (k & 1) in x and (k >> 1) in t; 2 x 2 Gauss points, weight hx ht / 4 each.
//
// Strong residual r = u_t + u u_x (u u_x = (u^2/2)_x inside a Q1 element, where u is continuous).
// Galerkin residual of test node i: R_i = sum_e sum_g w [psi_i r + nu psi_i,x u_x] (the diffusion
// term integrated by parts; its boundary term vanishes at x = 0, where test functions are zero, and
// at x = 1 by the zero-gradient outflow condition). Everything is fp64 and node-centric: a node
// gathers from its (up to four) elements, so no two threads write one value and the result does not
// depend on the thread count.
#pragma once

#include <cstdint>

#include "core/hd.hpp"

namespace pdegen::burgers {

struct Grid {
  int nx = 0, nt = 0;
  double hx = 0, ht = 0, nu = 0;
};

// Shape functions and their x and t derivatives at one Gauss point.
struct Point {
  double psi[4], psi_x[4], psi_t[4];
};

PDEGEN_HD Point gauss_point(int g, double hx, double ht) {
  const double lo = 0.21132486540518711775, hi = 0.78867513459481288225;  // (1 -+ 1/sqrt(3)) / 2
  const double xi = (g & 1) ? hi : lo, eta = (g & 2) ? hi : lo;
  Point p;
  for (int k = 0; k < 4; ++k) {
    const double fx = (k & 1) ? xi : 1.0 - xi, ft = (k & 2) ? eta : 1.0 - eta;
    const double dfx = (k & 1) ? 1.0 : -1.0, dft = (k & 2) ? 1.0 : -1.0;
    p.psi[k] = fx * ft;
    p.psi_x[k] = dfx * ft / hx;
    p.psi_t[k] = fx * dft / ht;
  }
  return p;
}

// u, u_x and u_t at a Gauss point from the element's four nodal values.
struct State {
  double u = 0, ux = 0, ut = 0;
};

PDEGEN_HD State state_at(const Point& p, const double uk[4]) {
  State s;
  for (int k = 0; k < 4; ++k) {
    s.u += p.psi[k] * uk[k];
    s.ux += p.psi_x[k] * uk[k];
    s.ut += p.psi_t[k] * uk[k];
  }
  return s;
}

template <class T>
PDEGEN_HD void load_element(const T* field, int nx, int en, int ej, double out[4]) {
  const int64_t base = static_cast<int64_t>(en) * nx + ej;
  out[0] = field[base];
  out[1] = field[base + 1];
  out[2] = field[base + nx];
  out[3] = field[base + nx + 1];
}

// d/du_j of a Gauss-point functional whose adjoints are lam (for r) and lam_x (for nu u_x):
// w [lam (psi_j,t + psi_j u_x + u psi_j,x) + nu lam_x psi_j,x].
PDEGEN_HD double node_sensitivity(const Point& p, const State& s, int k, double lam, double lam_x,
                                  double nu) {
  return lam * (p.psi_t[k] + p.psi[k] * s.ux + s.u * p.psi_x[k]) + nu * lam_x * p.psi_x[k];
}

// Calls f(en, ej, k) for each element (en, ej) around node (n, j), k the node's local index there.
template <class F>
PDEGEN_HD void for_elements_around(const Grid& g, int n, int j, F&& f) {
  for (int en = n - 1; en <= n; ++en)
    for (int ej = j - 1; ej <= j; ++ej)
      if (en >= 0 && en < g.nt - 1 && ej >= 0 && ej < g.nx - 1) f(en, ej, (j - ej) + 2 * (n - en));
}

// Calls f(point, state, k, en, ej) for each Gauss point of each element (en, ej) around node (n, j):
// the shape functions there, u's state, and the node's local index k in that element.
template <class F>
PDEGEN_HD void for_gauss_points_around(const float* u, const Grid& g, int n, int j, F&& f) {
  for_elements_around(g, n, j, [&](int en, int ej, int k) {
    double uk[4];
    load_element(u, g.nx, en, ej, uk);
    for (int q = 0; q < 4; ++q) {
      const Point p = gauss_point(q, g.hx, g.ht);
      f(p, state_at(p, uk), k, en, ej);
    }
  });
}

// R at node (n, j) (any node; the loss keeps the test nodes).
PDEGEN_HD double galerkin_residual(const float* u, const Grid& g, int n, int j) {
  const double w = 0.25 * g.hx * g.ht;
  double R = 0;
  for_gauss_points_around(u, g, n, j, [&](const Point& p, const State& s, int k, int, int) {
    R += w * (p.psi[k] * (s.ut + s.u * s.ux) + g.nu * p.psi_x[k] * s.ux);
  });
  return R;
}

// dJ/du at node (n, j) for J = sum_i lambda_i-weighted residuals: lambda = dJ/dR per node (zero off
// the test nodes).
PDEGEN_HD double galerkin_gradient(const float* u, const double* lambda, const Grid& g, int n, int j) {
  const double w = 0.25 * g.hx * g.ht;
  double d = 0;
  for_gauss_points_around(u, g, n, j, [&](const Point& p, const State& s, int k, int en, int ej) {
    double lk[4];
    load_element(lambda, g.nx, en, ej, lk);
    double lam = 0, lam_x = 0;
    for (int m = 0; m < 4; ++m) {
      lam += lk[m] * p.psi[m];
      lam_x += lk[m] * p.psi_x[m];
    }
    d += w * node_sensitivity(p, s, k, lam, lam_x, g.nu);
  });
  return d;
}

// sum over the Gauss points of element (en, ej) of w r^2: the least-squares loss of one element.
PDEGEN_HD double least_squares_element(const float* u, const Grid& g, int en, int ej) {
  const double w = 0.25 * g.hx * g.ht;
  double uk[4];
  load_element(u, g.nx, en, ej, uk);
  double J = 0;
  for (int q = 0; q < 4; ++q) {
    const State s = state_at(gauss_point(q, g.hx, g.ht), uk);
    const double r = s.ut + s.u * s.ux;
    J += w * r * r;
  }
  return J;
}

// dJ/du at node (n, j) of the least-squares loss: sum w 2 r (psi_j,t + psi_j u_x + u psi_j,x).
PDEGEN_HD double least_squares_gradient(const float* u, const Grid& g, int n, int j) {
  const double w = 0.25 * g.hx * g.ht;
  double d = 0;
  for_gauss_points_around(u, g, n, j, [&](const Point& p, const State& s, int k, int, int) {
    d += w * node_sensitivity(p, s, k, 2.0 * (s.ut + s.u * s.ux), 0.0, 0.0);
  });
  return d;
}

}  // namespace pdegen::burgers

// Q1 (bilinear) finite-element arithmetic on one element of a uniform 2D grid, shared by the
// physics loss, the reference solver, the CPU loops and the CUDA kernels (PHYSICS.md, section 1).
//
// Element (i, j) spans nodes (i, j), (i+1, j), (i, j+1), (i+1, j+1) (i along x, fastest), local
// numbering a = 0..3 in that order. Reference coordinates (xi, eta) in [-1, 1]^2, 2x2 Gauss points
// (+-1/sqrt 3) with weight 1, |det J| = hx hy / 4. Nodal coefficient values are interpolated
// bilinearly to the Gauss points. With these, for nodal u, nu, f:
//   element energy   E = sum_q |J| (1/2 nu_q |grad u_q|^2 - f_q u_q)
//   its gradient     dE/du_a = (K_e u)_a - F_a,  K_e = sum_q nu_q |J| grad N_a . grad N_b,
//                    F_a = sum_q |J| f_q N_a(q)
// J is quadratic in u, so the gradient of the assembled energy is exactly K u - F.
#pragma once

#include "core/hd.hpp"

namespace pdegen::q1 {

// Shape-function values and reference derivatives at the Gauss points, in (q, a) order.
// q runs over (xi, eta) = (-g,-g), (+g,-g), (-g,+g), (+g,+g) with g = 1/sqrt(3).
struct Tables {
  double N[4][4];
  double dxi[4][4];
  double deta[4][4];
};

PDEGEN_HD constexpr Tables make_tables() {
  Tables t{};
  constexpr double g = 0.57735026918962576451;  // 1/sqrt(3)
  constexpr double xs[4] = {-1, 1, -1, 1};      // node a's reference coordinates
  constexpr double ys[4] = {-1, -1, 1, 1};
  constexpr double qx[4] = {-g, g, -g, g};
  constexpr double qy[4] = {-g, -g, g, g};
  for (int q = 0; q < 4; ++q)
    for (int a = 0; a < 4; ++a) {
      t.N[q][a] = 0.25 * (1 + xs[a] * qx[q]) * (1 + ys[a] * qy[q]);
      t.dxi[q][a] = 0.25 * xs[a] * (1 + ys[a] * qy[q]);
      t.deta[q][a] = 0.25 * ys[a] * (1 + xs[a] * qx[q]);
    }
  return t;
}

inline constexpr Tables tables = make_tables();
#if defined(__CUDACC__)
// The GPU's copy: device code cannot read a host constexpr aggregate at run time.
__device__ constexpr Tables device_tables = make_tables();
#endif

// The tables on the side that runs the caller.
PDEGEN_HD constexpr const Tables& q1_tables() {
#if defined(__CUDA_ARCH__)
  return device_tables;
#else
  return tables;
#endif
}

// Coefficient at the 4 Gauss points from its 4 nodal values.
template <class T>
PDEGEN_HD void gauss_values(const T nodal[4], T at_q[4]) {
  for (int q = 0; q < 4; ++q) {
    T s = 0;
    for (int a = 0; a < 4; ++a) s += static_cast<T>(q1_tables().N[q][a]) * nodal[a];
    at_q[q] = s;
  }
}

// Physical gradient of u at Gauss point q.
template <class T>
PDEGEN_HD void gradient_at(int q, const T u[4], T hx, T hy, T& ux, T& uy) {
  T sx = 0, sy = 0;
  for (int a = 0; a < 4; ++a) {
    sx += static_cast<T>(q1_tables().dxi[q][a]) * u[a];
    sy += static_cast<T>(q1_tables().deta[q][a]) * u[a];
  }
  ux = sx * (T(2) / hx);
  uy = sy * (T(2) / hy);
}

// Element energy; nu_q and f_q at the Gauss points.
template <class T>
PDEGEN_HD T element_energy(const T u[4], const T nu_q[4], const T f_q[4], T hx, T hy) {
  const T detj = hx * hy / T(4);
  T e = 0;
  for (int q = 0; q < 4; ++q) {
    T ux, uy, uq = 0;
    gradient_at(q, u, hx, hy, ux, uy);
    for (int a = 0; a < 4; ++a) uq += static_cast<T>(q1_tables().N[q][a]) * u[a];
    e += detj * (T(0.5) * nu_q[q] * (ux * ux + uy * uy) - f_q[q] * uq);
  }
  return e;
}

// g_a = (K_e u)_a - F_a: the element's contribution to the energy gradient at its 4 nodes.
template <class T>
PDEGEN_HD void element_gradient(const T u[4], const T nu_q[4], const T f_q[4], T hx, T hy, T g[4]) {
  const T detj = hx * hy / T(4);
  for (int a = 0; a < 4; ++a) g[a] = 0;
  for (int q = 0; q < 4; ++q) {
    T ux, uy;
    gradient_at(q, u, hx, hy, ux, uy);
    const T kx = detj * nu_q[q] * ux * (T(2) / hx), ky = detj * nu_q[q] * uy * (T(2) / hy);
    for (int a = 0; a < 4; ++a)
      g[a] += kx * static_cast<T>(q1_tables().dxi[q][a]) + ky * static_cast<T>(q1_tables().deta[q][a]) -
              detj * f_q[q] * static_cast<T>(q1_tables().N[q][a]);
  }
}

// The element stiffness matrix K_e (row-major 4x4) for Gauss-point coefficients nu_q.
template <class T>
PDEGEN_HD void element_matrix(const T nu_q[4], T hx, T hy, T K[16]) {
  const T detj = hx * hy / T(4), sx = T(2) / hx, sy = T(2) / hy;
  for (int i = 0; i < 16; ++i) K[i] = 0;
  for (int q = 0; q < 4; ++q)
    for (int a = 0; a < 4; ++a)
      for (int b = 0; b < 4; ++b)
        K[a * 4 + b] += detj * nu_q[q] *
                        (static_cast<T>(q1_tables().dxi[q][a] * q1_tables().dxi[q][b]) * sx * sx +
                         static_cast<T>(q1_tables().deta[q][a] * q1_tables().deta[q][b]) * sy * sy);
}

// The element load vector F_e for Gauss-point source values f_q.
template <class T>
PDEGEN_HD void element_load(const T f_q[4], T hx, T hy, T F[4]) {
  const T detj = hx * hy / T(4);
  for (int a = 0; a < 4; ++a) {
    T s = 0;
    for (int q = 0; q < 4; ++q) s += detj * f_q[q] * static_cast<T>(q1_tables().N[q][a]);
    F[a] = s;
  }
}

// Global node indices of element (i, j) on a grid with nx nodes along x, in local order.
PDEGEN_HD void element_nodes(long i, long j, long nx, long idx[4]) {
  idx[0] = j * nx + i;
  idx[1] = j * nx + i + 1;
  idx[2] = (j + 1) * nx + i;
  idx[3] = (j + 1) * nx + i + 1;
}

}  // namespace pdegen::q1

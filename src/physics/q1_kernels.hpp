// Q1 (multilinear) finite-element arithmetic on one element of a uniform grid in Dim = 2 or 3 space
// dimensions, shared by the physics loss, the reference solver, the CPU loops and the CUDA kernels
//. The dimension is a template parameter: one code for both.
//
// An element has 2^Dim nodes; local node a sits at offset bit d of a along axis d (x = bit 0), so in
// 2D a = 0..3 is (i, j), (i+1, j), (i, j+1), (i+1, j+1) and in 3D a = 4..7 repeat that on the plane
// k + 1. Reference coordinates in [-1, 1]^Dim, 2^Dim Gauss points (+-1/sqrt 3 per axis, bit d of q
// the sign along axis d) with weight 1, |det J| = prod h_d / 2^Dim. Nodal coefficient values are
// interpolated multilinearly to the Gauss points. With these, for nodal u, nu, f:
//   element energy   E = sum_q |J| (1/2 nu_q |grad u_q|^2 - f_q u_q)
//   its gradient     dE/du_a = (K_e u)_a - F_a,  K_e = sum_q nu_q |J| grad N_a . grad N_b,
//                    F_a = sum_q |J| f_q N_a(q)
// J is quadratic in u, so the gradient of the assembled energy is exactly K u - F.
//
// Every function keeps one fixed operation order (sums from 0, terms in q, a and axis order), the
// same for T = double and for the CPU loss's vector lanes, so results are reproducible bit for bit.
#pragma once

#include <utility>

#include "core/hd.hpp"

namespace pdegen::q1 {

// Nodes (and Gauss points) of one element.
template <int Dim>
inline constexpr int nodes = 1 << Dim;

// Shape-function values and reference derivatives at the Gauss points, in (q, a) order; dN[d] is
// the derivative along reference axis d.
template <int Dim>
struct Tables {
  static_assert(Dim == 2 || Dim == 3, "Q1 elements are 2D or 3D");
  double N[nodes<Dim>][nodes<Dim>];
  double dN[Dim][nodes<Dim>][nodes<Dim>];
};

template <int Dim>
PDEGEN_HD constexpr Tables<Dim> make_tables() {
  Tables<Dim> t{};
  constexpr double g = 0.57735026918962576451;  // 1/sqrt(3)
  constexpr double scale = 1.0 / nodes<Dim>;    // exact: a power of two
  // N_a(q) = scale * prod_d (1 + s_d(a) g_d(q)), multiplied in axis order; its derivative along d
  // replaces factor d by s_d(a). Node coordinates s_d = +-1, Gauss coordinates g_d = +-g.
  for (int q = 0; q < nodes<Dim>; ++q)
    for (int a = 0; a < nodes<Dim>; ++a) {
      double factor[Dim], sign[Dim];
      for (int d = 0; d < Dim; ++d) {
        sign[d] = (a >> d) & 1 ? 1.0 : -1.0;
        factor[d] = 1 + sign[d] * ((q >> d) & 1 ? g : -g);
      }
      double n = scale;
      for (int d = 0; d < Dim; ++d) n *= factor[d];
      t.N[q][a] = n;
      for (int d = 0; d < Dim; ++d) {
        double dn = scale * sign[d];
        for (int e = 0; e < Dim; ++e)
          if (e != d) dn *= factor[e];
        t.dN[d][q][a] = dn;
      }
    }
  return t;
}

template <int Dim>
inline constexpr Tables<Dim> tables = make_tables<Dim>();
#if defined(__CUDACC__)
// The GPU's copies: device code cannot read a host constexpr aggregate at run time.
__device__ constexpr Tables<2> device_tables_2d = make_tables<2>();
__device__ constexpr Tables<3> device_tables_3d = make_tables<3>();
#endif

// The tables on the side that runs the caller.
template <int Dim>
PDEGEN_HD constexpr const Tables<Dim>& q1_tables() {
#if defined(__CUDA_ARCH__)
  if constexpr (Dim == 2)
    return device_tables_2d;
  else
    return device_tables_3d;
#else
  return tables<Dim>;
#endif
}

// |det J| = h_0 h_1 (h_2) / 2^Dim, multiplied in axis order.
template <int Dim, class T>
PDEGEN_HD T jacobian(const T h[Dim]) {
  T p = h[0];
  for (int d = 1; d < Dim; ++d) p = p * h[d];
  return p / T(nodes<Dim>);
}

// Sums over the axes, each written as one expression (a fold), the form the 2D code had: GCC's FMA
// contraction depends on the expression's shape, and 2D results must not change by a bit.
template <int Dim, class T, int... d>
PDEGEN_HD T squared_norm(const T v[Dim], std::integer_sequence<int, d...>) {
  return (... + (v[d] * v[d]));
}
// sum_d k_d dN_d[q][a]
template <int Dim, class T, int... d>
PDEGEN_HD T weighted_derivatives(const T k[Dim], int q, int a, std::integer_sequence<int, d...>) {
  return (... + (k[d] * static_cast<T>(q1_tables<Dim>().dN[d][q][a])));
}
// sum_d dN_d[q][a] dN_d[q][b] s_d^2
template <int Dim, class T, int... d>
PDEGEN_HD T derivative_product(const T sc[Dim], int q, int a, int b, std::integer_sequence<int, d...>) {
  return (... +
          (static_cast<T>(q1_tables<Dim>().dN[d][q][a] * q1_tables<Dim>().dN[d][q][b]) * sc[d] * sc[d]));
}
template <int Dim>
using Axes = std::make_integer_sequence<int, Dim>;

// Coefficient at the Gauss points from its nodal values.
template <int Dim, class T>
PDEGEN_HD void gauss_values(const T nodal[nodes<Dim>], T at_q[nodes<Dim>]) {
  for (int q = 0; q < nodes<Dim>; ++q) {
    T s = 0;
    for (int a = 0; a < nodes<Dim>; ++a) s += static_cast<T>(q1_tables<Dim>().N[q][a]) * nodal[a];
    at_q[q] = s;
  }
}

// Physical gradient of u at Gauss point q; h = element size per axis.
template <int Dim, class T>
PDEGEN_HD void gradient_at(int q, const T u[nodes<Dim>], const T h[Dim], T grad[Dim]) {
  T s[Dim];
  for (int d = 0; d < Dim; ++d) s[d] = 0;
  for (int a = 0; a < nodes<Dim>; ++a)
    for (int d = 0; d < Dim; ++d) s[d] += static_cast<T>(q1_tables<Dim>().dN[d][q][a]) * u[a];
  for (int d = 0; d < Dim; ++d) grad[d] = s[d] * (T(2) / h[d]);
}

// Element energy; nu_q and f_q at the Gauss points.
template <int Dim, class T>
PDEGEN_HD T element_energy(const T u[nodes<Dim>], const T nu_q[nodes<Dim>], const T f_q[nodes<Dim>],
                           const T h[Dim]) {
  const T detj = jacobian<Dim>(h);
  T e = 0;
  for (int q = 0; q < nodes<Dim>; ++q) {
    T grad[Dim], uq = 0;
    gradient_at<Dim>(q, u, h, grad);
    for (int a = 0; a < nodes<Dim>; ++a) uq += static_cast<T>(q1_tables<Dim>().N[q][a]) * u[a];
    e += detj * (T(0.5) * nu_q[q] * squared_norm<Dim>(grad, Axes<Dim>{}) - f_q[q] * uq);
  }
  return e;
}

// g_a = (K_e u)_a - F_a: the element's contribution to the energy gradient at its nodes.
template <int Dim, class T>
PDEGEN_HD void element_gradient(const T u[nodes<Dim>], const T nu_q[nodes<Dim>], const T f_q[nodes<Dim>],
                                const T h[Dim], T g[nodes<Dim>]) {
  const T detj = jacobian<Dim>(h);
  for (int a = 0; a < nodes<Dim>; ++a) g[a] = 0;
  for (int q = 0; q < nodes<Dim>; ++q) {
    T grad[Dim], k[Dim];
    gradient_at<Dim>(q, u, h, grad);
    for (int d = 0; d < Dim; ++d) k[d] = detj * nu_q[q] * grad[d] * (T(2) / h[d]);
    for (int a = 0; a < nodes<Dim>; ++a) {
      g[a] += weighted_derivatives<Dim>(k, q, a, Axes<Dim>{}) -
              detj * f_q[q] * static_cast<T>(q1_tables<Dim>().N[q][a]);
    }
  }
}

// The element stiffness matrix K_e (row-major 2^Dim x 2^Dim) for Gauss-point coefficients nu_q.
template <int Dim, class T>
PDEGEN_HD void element_matrix(const T nu_q[nodes<Dim>], const T h[Dim], T K[nodes<Dim> * nodes<Dim>]) {
  constexpr int n = nodes<Dim>;
  const T detj = jacobian<Dim>(h);
  T sc[Dim];
  for (int d = 0; d < Dim; ++d) sc[d] = T(2) / h[d];
  for (int i = 0; i < n * n; ++i) K[i] = 0;
  for (int q = 0; q < n; ++q)
    for (int a = 0; a < n; ++a)
      for (int b = 0; b < n; ++b)
        K[a * n + b] += detj * nu_q[q] * derivative_product<Dim>(sc, q, a, b, Axes<Dim>{});
}

// The element load vector F_e for Gauss-point source values f_q.
template <int Dim, class T>
PDEGEN_HD void element_load(const T f_q[nodes<Dim>], const T h[Dim], T F[nodes<Dim>]) {
  const T detj = jacobian<Dim>(h);
  for (int a = 0; a < nodes<Dim>; ++a) {
    T s = 0;
    for (int q = 0; q < nodes<Dim>; ++q) s += detj * f_q[q] * static_cast<T>(q1_tables<Dim>().N[q][a]);
    F[a] = s;
  }
}

// Global node indices, in local order, of the element whose first node is e (per axis, x first) on a
// grid with n[d] nodes along axis d (x fastest).
template <int Dim>
PDEGEN_HD void element_nodes(const long e[Dim], const long n[Dim], long idx[nodes<Dim>]) {
  for (int a = 0; a < nodes<Dim>; ++a) {
    long index = 0;
    for (int d = Dim - 1; d >= 0; --d) index = index * n[d] + e[d] + ((a >> d) & 1);
    idx[a] = index;
  }
}

}  // namespace pdegen::q1

// Karhunen-Loeve eigenpairs of the exponential covariance exp(-|x - y| / l) on [0, 1] and their 2D
// tensor products: the modes from which the poisson2d coefficient log nu is built (PHYSICS.md,
// section 1; the choices are in docs/theory.md, "poisson2d").
#pragma once

#include <cmath>
#include <vector>

namespace pdegen::kl {

// The pole-free characteristic function f(a) = (l^2 a^2 - 1) sin a - 2 l a cos a. Its positive roots
// are those of tan a = 2 l a / (l^2 a^2 - 1), including a = 1/l when cos(1/l) = 0, where the tan
// form reads infinity = infinity.
double characteristic(double a, double l);

// The n-th positive root (n >= 1), the only one in ((n - 1) pi, n pi), to machine precision.
double root(int n, double l);

// One eigenpair: lambda = 2 l / (1 + l^2 a^2), phi(x) = (l a cos(a x) + sin(a x)) / c, ||phi||_L2 = 1.
struct Eigenpair1D {
  double a = 0;
  double lambda = 0;
  double la = 0;        // l * a
  double inv_norm = 0;  // 1 / c
  double operator()(double x) const { return (la * std::cos(a * x) + std::sin(a * x)) * inv_norm; }
};

// The first `count` eigenpairs, a (and so 1 / lambda) increasing.
std::vector<Eigenpair1D> eigenpairs_1d(double l, int count);

// The 2D mode phi_i(x) phi_j(y) (i, j index eigenpairs_1d, from 0) with weight sqrt(lambda_i lambda_j).
struct Mode2D {
  int i = 0;
  int j = 0;
  double weight = 0;
};

// The first m 2D modes in decreasing lambda_i lambda_j; equal products (i, j) / (j, i) are ordered
// by (i + j, i), so (0, 1) (varying along y) comes before (1, 0). All indices are below m, so
// eigenpairs_1d(l, m) holds every 1D factor.
std::vector<Mode2D> modes_2d(double l, int m);

}  // namespace pdegen::kl

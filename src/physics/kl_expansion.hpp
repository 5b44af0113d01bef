// Karhunen-Loeve eigenpairs of the exponential covariance exp(-|x - y| / l) on [0, 1] and their 2D
// and 3D tensor products: the modes from which the poisson2d and poisson3d coefficient log nu is
// built (the choices are in docs/theory.md, "poisson2d").
#pragma once

#include <array>
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

// A Dim-dimensional mode phi_{index[0]}(x) phi_{index[1]}(y) (phi_{index[2]}(z)), indices into
// eigenpairs_1d from 0, with weight sqrt(lambda_index[0] lambda_index[1] ...).
template <int Dim>
struct Mode {
  std::array<int, Dim> index{};
  double weight = 0;
};

// The first m Dim-dimensional modes (Dim = 2 or 3) in decreasing product of the lambdas. The product
// is formed from the factors sorted by index, so permutations of one index set tie exactly; ties are
// ordered by the index sum, then lexicographically (x index first): in 2D (0, 1) (varying along y)
// comes before (1, 0), in 3D (0, 0, 1) before (0, 1, 0) before (1, 0, 0). A mode among the first m
// has (i + 1)(j + 1)(k + 1) <= m modes dominating or equal to it, so all indices are below m and
// eigenpairs_1d(l, m) holds every 1D factor.
template <int Dim>
std::vector<Mode<Dim>> modes(double l, int m);

}  // namespace pdegen::kl

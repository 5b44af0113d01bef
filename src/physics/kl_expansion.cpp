// KL eigenpairs: roots bracketed analytically, one per interval ((n - 1) pi, n pi), then bisected on
// the pole-free form until the bracket is two adjacent doubles.
#include "physics/kl_expansion.hpp"

#include <algorithm>
#include <numbers>

#include "core/error.hpp"

namespace pdegen::kl {

double characteristic(double a, double l) {
  return (l * l * a * a - 1) * std::sin(a) - 2 * l * a * std::cos(a);
}

double root(int n, double l) {
  PDEGEN_CHECK(n >= 1, "KL root index starts at 1, got {}", n);
  PDEGEN_CHECK(l > 0 && std::isfinite(l), "correlation length must be positive, got {}", l);
  constexpr double pi = std::numbers::pi;
  // f((n-1) pi) = -2 l (n-1) pi (-1)^(n-1) and f(n pi) = -2 l n pi (-1)^n have opposite signs; for
  // n = 1 f vanishes at 0 but f(a) = -(1 + 2 l) a + O(a^3) just right of it. So the sign at the left
  // end is (-1)^n for every n, known without evaluating f where rounding of n pi could flip it.
  double lo = (n - 1) * pi, hi = n * pi;
  const bool negative_at_lo = n % 2 == 1;
  for (;;) {
    const double mid = lo + 0.5 * (hi - lo);
    if (mid <= lo || mid >= hi) break;
    const double fm = characteristic(mid, l);
    if (fm == 0) return mid;
    if ((fm < 0) == negative_at_lo)
      lo = mid;
    else
      hi = mid;
  }
  return std::abs(characteristic(lo, l)) <= std::abs(characteristic(hi, l)) ? lo : hi;
}

std::vector<Eigenpair1D> eigenpairs_1d(double l, int count) {
  PDEGEN_CHECK(count >= 0, "negative eigenpair count {}", count);
  std::vector<Eigenpair1D> pairs(static_cast<size_t>(count));
  for (int n = 1; n <= count; ++n) {
    Eigenpair1D& e = pairs[static_cast<size_t>(n - 1)];
    e.a = root(n, l);
    e.la = l * e.a;
    e.lambda = 2 * l / (1 + e.la * e.la);
    // c^2 = int_0^1 (l a cos + sin)^2 = (l^2 a^2 + 1) / 2 + (l^2 a^2 - 1) sin(2a) / (4a) + l sin^2 a.
    // The general form, not its simplification (1 + l^2 a^2) / 2 + l that holds only at an exact
    // root, so the norm stays right to rounding whatever the root's last bit.
    const double c2 = 0.5 * (e.la * e.la + 1) + (e.la * e.la - 1) * std::sin(2 * e.a) / (4 * e.a) +
                      l * std::sin(e.a) * std::sin(e.a);
    e.inv_norm = 1 / std::sqrt(c2);
  }
  return pairs;
}

std::vector<Mode2D> modes_2d(double l, int m) {
  PDEGEN_CHECK(m >= 1, "need at least one KL mode, got {}", m);
  // lambda_n strictly decreases with n, so a pair (i, j) among the first m has (i + 1)(j + 1) <= m
  // pairs dominating or equal to it: i, j < m, and m x m candidates are enough.
  const std::vector<Eigenpair1D> pairs = eigenpairs_1d(l, m);
  std::vector<Mode2D> all;
  all.reserve(static_cast<size_t>(m) * static_cast<size_t>(m));
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) {
      // The product is formed the same way for (i, j) and (j, i): IEEE multiplication commutes, so
      // symmetric pairs tie exactly and the tie-break, not rounding, orders them.
      const double product = pairs[static_cast<size_t>(i)].lambda * pairs[static_cast<size_t>(j)].lambda;
      all.push_back(Mode2D{i, j, product});
    }
  std::sort(all.begin(), all.end(), [](const Mode2D& x, const Mode2D& y) {
    if (x.weight != y.weight) return x.weight > y.weight;
    if (x.i + x.j != y.i + y.j) return x.i + x.j < y.i + y.j;
    return x.i < y.i;
  });
  all.resize(static_cast<size_t>(m));
  for (Mode2D& mode : all) mode.weight = std::sqrt(mode.weight);
  return all;
}

}  // namespace pdegen::kl

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

namespace {

// Every index tuple with prod_d (index_d + 1) <= m (the only candidates for the first m modes), in
// lexicographic order.
template <int Dim>
void candidates(int m, std::array<int, Dim>& index, int d, int product,
                std::vector<std::array<int, Dim>>& out) {
  if (d == Dim) {
    out.push_back(index);
    return;
  }
  for (int i = 0; (i + 1) * product <= m; ++i) {
    index[static_cast<size_t>(d)] = i;
    candidates<Dim>(m, index, d + 1, (i + 1) * product, out);
  }
}

}  // namespace

template <int Dim>
std::vector<Mode<Dim>> modes(double l, int m) {
  static_assert(Dim == 2 || Dim == 3, "KL modes are 2D or 3D");
  PDEGEN_CHECK(m >= 1, "need at least one KL mode, got {}", m);
  // lambda_n strictly decreases with n, so a tuple among the first m has prod (index_d + 1) <= m
  // tuples dominating or equal to it: the candidates above are enough, all indices below m.
  const std::vector<Eigenpair1D> pairs = eigenpairs_1d(l, m);
  std::vector<std::array<int, Dim>> tuples;
  std::array<int, Dim> index{};
  candidates<Dim>(m, index, 0, 1, tuples);
  std::vector<Mode<Dim>> all;
  all.reserve(tuples.size());
  for (const std::array<int, Dim>& t : tuples) {
    // The product is formed from the factors in index order, the same for every permutation, so
    // symmetric tuples tie exactly and the tie-break, not rounding, orders them.
    std::array<int, Dim> sorted = t;
    std::sort(sorted.begin(), sorted.end());
    double product = pairs[static_cast<size_t>(sorted[0])].lambda;
    for (int d = 1; d < Dim; ++d)
      product = product * pairs[static_cast<size_t>(sorted[static_cast<size_t>(d)])].lambda;
    all.push_back(Mode<Dim>{t, product});
  }
  auto sum = [](const Mode<Dim>& x) {
    int s = 0;
    for (int i : x.index) s += i;
    return s;
  };
  std::sort(all.begin(), all.end(), [&](const Mode<Dim>& x, const Mode<Dim>& y) {
    if (x.weight != y.weight) return x.weight > y.weight;
    if (sum(x) != sum(y)) return sum(x) < sum(y);
    return x.index < y.index;
  });
  all.resize(static_cast<size_t>(m));
  for (Mode<Dim>& mode : all) mode.weight = std::sqrt(mode.weight);
  return all;
}

template std::vector<Mode<2>> modes<2>(double l, int m);
template std::vector<Mode<3>> modes<3>(double l, int m);

}  // namespace pdegen::kl

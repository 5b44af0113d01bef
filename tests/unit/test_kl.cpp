// KL expansion and sampler: roots against an independent scan of the tan form, one root per
// interval, eigenpairs against the covariance integral equation, orthonormality, mode order, and a
// sampler that depends only on (seed, global index) and evaluates the documented KL sum.
#include <algorithm>
#include <array>
#include <cmath>
#include <functional>
#include <limits>
#include <numbers>

#include "physics/kl_expansion.hpp"
#include "physics/kl_sampler.hpp"
#include "testing.hpp"

using namespace pdegen;
using namespace pdegen::testing;

namespace {
constexpr double pi = std::numbers::pi;

// Composite Simpson on [lo, hi] with `intervals` (even) pieces: error ~ h^4 f''''/180, below 1e-12
// here for the smooth integrands used.
double simpson(const std::function<double(double)>& f, double lo, double hi, int intervals = 20000) {
  const double h = (hi - lo) / intervals;
  double s = f(lo) + f(hi);
  for (int k = 1; k < intervals; ++k) s += (k % 2 == 1 ? 4 : 2) * f(lo + k * h);
  return s * h / 3;
}

// The tan form, continuous between the poles of tan (pi/2 + k pi) and of the right side (1 / l).
double tan_form(double a, double l) { return std::tan(a) - 2 * l * a / (l * l * a * a - 1); }

// The first `count` roots of the tan form by a fine scan and bisection, skipping sign changes at
// poles: written without kl::characteristic or its bracketing argument.
std::vector<double> scanned_roots(double l, int count) {
  std::vector<double> found;
  const double step = 1e-4;
  auto spans_pole = [&](double lo, double hi) {
    const double k = std::floor((lo - pi / 2) / pi) + 1;  // first tan pole above lo
    return pi / 2 + k * pi <= hi || (lo <= 1 / l && 1 / l <= hi);
  };
  for (double lo = step; static_cast<int>(found.size()) < count; lo += step) {
    const double hi = lo + step;
    if (spans_pole(lo, hi)) continue;
    double a = lo, b = hi, fa = tan_form(a, l);
    if ((fa < 0) == (tan_form(b, l) < 0)) continue;
    for (int it = 0; it < 200; ++it) {
      const double mid = 0.5 * (a + b);
      if (mid <= a || mid >= b) break;
      const double fm = tan_form(mid, l);
      if ((fm < 0) == (fa < 0)) {
        a = mid;
        fa = fm;
      } else {
        b = mid;
      }
    }
    found.push_back(0.5 * (a + b));
  }
  return found;
}

// The eigenfunction from the formula of docs/theory.md, normalised by quadrature (not the closed form).
std::function<double(double)> normalised_phi(double a, double l) {
  auto raw = [=](double x) { return l * a * std::cos(a * x) + std::sin(a * x); };
  const double c = std::sqrt(simpson([&](double x) { return raw(x) * raw(x); }, 0, 1));
  return [=](double x) { return raw(x) / c; };
}

PoissonSettings settings_with(int modes, double l = 0.5) {
  PoissonSettings s;
  s.kl_modes = modes;
  s.correlation_length = l;
  s.sigma = 0.7;
  s.omega_max = 3.0;
  return s;
}

Vec field_of(const Tensor& t, int64_t sample) {
  const Vec all = values_of(t);
  const size_t per = static_cast<size_t>(t.shape().numel() / t.dim(0));
  return Vec(all.begin() + static_cast<std::ptrdiff_t>(sample * static_cast<int64_t>(per)),
             all.begin() + static_cast<std::ptrdiff_t>((sample + 1) * static_cast<int64_t>(per)));
}
}  // namespace

TEST_CASE("KL roots solve the characteristic equation to machine precision and the tan form to 1e-12") {
  for (double l : {0.05, 0.2, 0.5, 1.0, 2 / pi, 3.0}) {
    CAPTURE(l);
    for (int n = 1; n <= 40; ++n) {
      CAPTURE(n);
      const double a = kl::root(n, l);
      // Machine precision: the pole-free form changes sign within a few ulps of a.
      const double below = kl::characteristic(a * (1 - 4e-16), l),
                   above = kl::characteristic(a * (1 + 4e-16), l);
      CHECK(below * above <= 0);
      // The tan form, where it is finite (|cos a| and |l a - 1| not tiny): tan a and
      // 2 l a / (l^2 a^2 - 1) agree to 1e-12 relative for the first 20 roots; beyond, to what a's
      // rounding allows, the condition number (1 + tan^2) a / |tan| times a few ulps (tan a ~ 2 / (l a)
      // shrinks, so 1e-12 itself is out of reach for large l a).
      if (std::abs(std::cos(a)) > 1e-3 && std::abs(l * a - 1) > 1e-3) {
        const double t = std::tan(a), rhs = 2 * l * a / (l * l * a * a - 1);
        const double rel = std::abs(t - rhs) / std::abs(rhs);
        const double condition = (1 + t * t) * a / std::abs(t);
        if (n <= 20) CHECK(rel <= 1e-12);
        CHECK(rel <= 4 * condition * std::numeric_limits<double>::epsilon());
      }
    }
  }
}

TEST_CASE("exactly one root lies between (n-1) pi and n pi for every n and the roots increase") {
  for (double l : {0.05, 0.2, 0.5, 1.0, 2 / pi, 3.0, 10.0}) {
    CAPTURE(l);
    double previous = 0;
    for (int n = 1; n <= 30; ++n) {
      CAPTURE(n);
      // Sign changes of the pole-free form on a fine grid of the interval (a = 0 excluded: f(0) = 0).
      const int samples = 20000;
      const double lo = (n - 1) * pi, hi = n * pi;
      int changes = 0;
      double f_prev = kl::characteristic(n == 1 ? 1e-9 : lo, l);
      for (int k = 1; k <= samples; ++k) {
        const double f = kl::characteristic(lo + (hi - lo) * k / samples, l);
        if ((f < 0) != (f_prev < 0)) ++changes;
        f_prev = f;
      }
      CHECK(changes == 1);
      const double a = kl::root(n, l);
      CHECK(a > lo);
      CHECK(a <= hi);
      CHECK(a > previous);
      previous = a;
    }
  }
}

TEST_CASE("l a = 1 is a root when cos(1/l) = 0 and is found") {
  // l = 2 / pi: a = pi / 2 makes both l^2 a^2 - 1 and cos a vanish; the tan form reads inf = inf.
  const double l = 2 / pi;
  CHECK(kl::root(1, l) == doctest::Approx(pi / 2).epsilon(1e-15));
  const std::vector<kl::Eigenpair1D> pairs = kl::eigenpairs_1d(l, 3);
  CHECK(pairs[0].lambda == doctest::Approx(l).epsilon(1e-14));
  // phi_1 = sin(pi x / 2 + pi / 4) up to normalisation: check it is unit-norm and finite.
  CHECK(simpson([&](double x) { return pairs[0](x) * pairs[0](x); }, 0, 1) ==
        doctest::Approx(1).epsilon(1e-10));
}

TEST_CASE("the first KL roots for l = 0.5 match an independent scan of the tan form") {
  const std::vector<double> scanned = scanned_roots(0.5, 6);
  for (int n = 1; n <= 6; ++n) {
    CAPTURE(n);
    CHECK(std::abs(kl::root(n, 0.5) - scanned[static_cast<size_t>(n - 1)]) <=
          1e-12 * scanned[static_cast<size_t>(n - 1)]);
  }
  // And written out: the first three roots from mpmath at 30 digits (bisection on the pole-free form).
  const double mpmath_roots[3] = {1.72066717803875952497, 4.05751567622086844715, 6.85123691896345629295};
  for (int n = 1; n <= 3; ++n) CHECK(kl::root(n, 0.5) == doctest::Approx(mpmath_roots[n - 1]).epsilon(1e-15));
}

TEST_CASE("KL eigenfunctions are orthonormal on [0, 1]") {
  for (double l : {0.2, 0.5, 2 / pi}) {
    CAPTURE(l);
    const std::vector<kl::Eigenpair1D> pairs = kl::eigenpairs_1d(l, 10);
    for (size_t p = 0; p < pairs.size(); ++p)
      for (size_t q = 0; q <= p; ++q) {
        CAPTURE(p);
        CAPTURE(q);
        const double ip = simpson([&](double x) { return pairs[p](x) * pairs[q](x); }, 0, 1);
        CHECK(std::abs(ip - (p == q ? 1.0 : 0.0)) < 1e-8);
      }
  }
}

TEST_CASE(
    "KL eigenpairs solve the covariance integral equation int exp(-|x-y|/l) phi(y) dy = lambda phi(x)") {
  for (double l : {0.2, 0.5, 1.0}) {
    CAPTURE(l);
    const std::vector<kl::Eigenpair1D> pairs = kl::eigenpairs_1d(l, 8);
    for (const kl::Eigenpair1D& e : pairs)
      for (double x : {0.0, 0.137, 0.5, 0.81, 1.0}) {
        auto integrand = [&](double y) { return std::exp(-std::abs(x - y) / l) * e(y); };
        // Split at the kink y = x so Simpson sees smooth pieces.
        const double lhs = (x > 0 ? simpson(integrand, 0, x) : 0) + (x < 1 ? simpson(integrand, x, 1) : 0);
        CHECK(std::abs(lhs - e.lambda * e(x)) < 1e-9);
      }
  }
}

TEST_CASE("2D modes come in decreasing eigenvalue product with ties ordered by (i + j, i)") {
  const double l = 0.5;
  const int m = 12;
  // Brute force over a wide index range with the documented comparator.
  const std::vector<kl::Eigenpair1D> pairs = kl::eigenpairs_1d(l, 30);
  struct Cand {
    int i, j;
    double product;
  };
  std::vector<Cand> all;
  for (int i = 0; i < 30; ++i)
    for (int j = 0; j < 30; ++j)
      all.push_back({i, j, pairs[static_cast<size_t>(i)].lambda * pairs[static_cast<size_t>(j)].lambda});
  std::stable_sort(all.begin(), all.end(), [](const Cand& a, const Cand& b) {
    if (a.product != b.product) return a.product > b.product;
    if (a.i + a.j != b.i + b.j) return a.i + a.j < b.i + b.j;
    return a.i < b.i;
  });
  const std::vector<kl::Mode<2>> modes = kl::modes<2>(l, m);
  REQUIRE(modes.size() == static_cast<size_t>(m));
  for (int k = 0; k < m; ++k) {
    CAPTURE(k);
    CHECK(modes[static_cast<size_t>(k)].index[0] == all[static_cast<size_t>(k)].i);
    CHECK(modes[static_cast<size_t>(k)].index[1] == all[static_cast<size_t>(k)].j);
    CHECK(modes[static_cast<size_t>(k)].weight ==
          doctest::Approx(std::sqrt(all[static_cast<size_t>(k)].product)).epsilon(1e-15));
    if (k > 0) CHECK(modes[static_cast<size_t>(k)].weight <= modes[static_cast<size_t>(k - 1)].weight);
  }
  // The first four for the default deck (lambda = 0.575, 0.195, 0.0785 for n = 1, 2, 3): (0,0), the
  // tie (0,1) before (1,0), then (0,2) since 0.575 * 0.0785 = 0.045 > 0.195^2 = 0.038.
  CHECK((modes[0].index[0] == 0 && modes[0].index[1] == 0));
  CHECK((modes[1].index[0] == 0 && modes[1].index[1] == 1));
  CHECK((modes[2].index[0] == 1 && modes[2].index[1] == 0));
  CHECK((modes[3].index[0] == 0 && modes[3].index[1] == 2));
}

TEST_CASE("a sample depends only on (seed, global index), not on the batch around it") {
  const KlSampler<2> sampler(settings_with(4), 17);
  Tensor abc, c_alone, ba;
  sampler.sample(11, {5, 9, 2}, abc);
  sampler.sample(11, {2}, c_alone);
  sampler.sample(11, {9, 5}, ba);
  REQUIRE(abc.shape() == Shape{3, 1, 17, 17});
  CHECK(field_of(abc, 2) == field_of(c_alone, 0));
  CHECK(field_of(abc, 0) == field_of(ba, 1));
  CHECK(field_of(abc, 1) == field_of(ba, 0));
  // A pre-allocated tensor of the right shape is written in place.
  const void* before = ba.raw();
  sampler.sample(11, {1, 3}, ba);
  CHECK(ba.raw() == before);
}

TEST_CASE("different global indices and different seeds give different fields") {
  const KlSampler<2> sampler(settings_with(4), 9);
  Tensor t, other_seed;
  sampler.sample(3, {0, 1, uint64_t{1} << 40}, t);
  sampler.sample(4, {0}, other_seed);
  CHECK(field_of(t, 0) != field_of(t, 1));
  CHECK(field_of(t, 0) != field_of(t, 2));
  CHECK(field_of(t, 0) != field_of(other_seed, 0));
}

TEST_CASE("omegas use the documented stream formula and lie in [-omega_max, omega_max]") {
  const PoissonSettings s = settings_with(6);
  const KlSampler<2> sampler(s, 5);
  CHECK(kl_stream(3) == ((uint64_t{4} << 32) | 3));
  double lo = 0, hi = 0;
  for (uint64_t g = 0; g < 2000; ++g) {
    const std::vector<double> w = sampler.omegas(21, g);
    REQUIRE(w.size() == 6);
    for (size_t k = 0; k < w.size(); ++k) {
      CHECK(w[k] == s.omega_max * (2 * random_uniform(21, (uint64_t{4} << 32) | k, g) - 1));
      lo = std::min(lo, w[k]);
      hi = std::max(hi, w[k]);
    }
  }
  CHECK(lo >= -s.omega_max);
  CHECK(hi <= s.omega_max);
  CHECK(lo < -0.99 * s.omega_max);  // the range is used, not a corner of it
  CHECK(hi > 0.99 * s.omega_max);
}

TEST_CASE("sampled log nu is sigma times the KL sum at the nodes (fp64 reference)") {
  for (double l : {0.5, 0.2}) {
    CAPTURE(l);
    const int m = 6, n = 13;
    const PoissonSettings s = settings_with(m, l);
    const KlSampler<2> sampler(s, n);
    // Independent pieces: roots (tested above), quadrature-normalised phi, lambda from its definition,
    // the mode order by brute force, the coefficients straight from Philox.
    std::vector<std::function<double(double)>> phi;
    std::vector<double> lambda;
    for (int k = 1; k <= m; ++k) {
      const double a = kl::root(k, l);
      phi.push_back(normalised_phi(a, l));
      lambda.push_back(2 * l / (1 + l * l * a * a));
    }
    std::vector<std::pair<int, int>> order;
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < m; ++j) order.emplace_back(i, j);
    std::stable_sort(order.begin(), order.end(), [&](auto a, auto b) {
      const double pa = lambda[static_cast<size_t>(a.first)] * lambda[static_cast<size_t>(a.second)];
      const double pb = lambda[static_cast<size_t>(b.first)] * lambda[static_cast<size_t>(b.second)];
      if (pa != pb) return pa > pb;
      if (a.first + a.second != b.first + b.second) return a.first + a.second < b.first + b.second;
      return a.first < b.first;
    });
    const std::vector<uint64_t> gs = {7, 1000003};
    Tensor t;
    sampler.sample(99, gs, t);
    for (size_t p = 0; p < gs.size(); ++p) {
      Vec ref(static_cast<size_t>(n * n));
      for (int k = 0; k < m; ++k) {
        const auto [mi, mj] = order[static_cast<size_t>(k)];
        const double omega =
            s.omega_max * (2 * random_uniform(99, (uint64_t{4} << 32) | static_cast<uint64_t>(k), gs[p]) - 1);
        const double c =
            s.sigma * omega * std::sqrt(lambda[static_cast<size_t>(mi)] * lambda[static_cast<size_t>(mj)]);
        for (int j = 0; j < n; ++j)
          for (int i = 0; i < n; ++i)
            ref[static_cast<size_t>(j * n + i)] += c * phi[static_cast<size_t>(mi)](i / double(n - 1)) *
                                                   phi[static_cast<size_t>(mj)](j / double(n - 1));
      }
      CHECK(rel_max_error(field_of(t, static_cast<int64_t>(p)), ref) < f32_tol);
    }
  }
}

TEST_CASE("log nu has mean ~0 and the truncated KL variance over many samples") {
  const int n = 9, count = 4000, m = 4;
  const PoissonSettings s = settings_with(m);
  const KlSampler<2> sampler(s, n);
  std::vector<uint64_t> gs(count);
  for (int p = 0; p < count; ++p) gs[static_cast<size_t>(p)] = static_cast<uint64_t>(p);
  Tensor t;
  sampler.sample(5, gs, t);
  const Vec v = values_of(t);
  const std::vector<kl::Eigenpair1D> pairs = kl::eigenpairs_1d(s.correlation_length, m);
  for (int node = 0; node < n * n; ++node) {
    CAPTURE(node);
    double sum = 0, sum2 = 0;
    for (int p = 0; p < count; ++p) {
      const double x = v[static_cast<size_t>(p * n * n + node)];
      sum += x;
      sum2 += x * x;
    }
    const double mean = sum / count, var = sum2 / count - mean * mean;
    CHECK(std::abs(mean) < 5 * std::sqrt(var / count));
    // Var = sigma^2 omega_max^2 / 3 * sum_k lambda_i lambda_j phi_i(x)^2 phi_j(y)^2.
    const double x = (node % n) / double(n - 1), y = (node / n) / double(n - 1);
    double expected = 0;
    for (const kl::Mode<2>& mode : sampler.modes()) {
      const double px = pairs[static_cast<size_t>(mode.index[0])](x),
                   py = pairs[static_cast<size_t>(mode.index[1])](y);
      expected += mode.weight * mode.weight * px * px * py * py;
    }
    expected *= s.sigma * s.sigma * s.omega_max * s.omega_max / 3;
    CHECK(var == doctest::Approx(expected).epsilon(0.1));
  }
}

TEST_CASE("3D modes are the first m index triples by decreasing eigenvalue product, ties by (sum, i, j)") {
  for (auto [l, m] : {std::pair{0.5, 4}, {0.5, 20}, {0.2, 37}}) {
    CAPTURE(l);
    CAPTURE(m);
    const std::vector<kl::Eigenpair1D> pairs = kl::eigenpairs_1d(l, 12);
    struct Cand {
      int i, j, k;
      double product;
    };
    // Brute force over 12^3 triples; the product from the factors in index order (as documented),
    // so permutations tie exactly.
    std::vector<Cand> all;
    for (int i = 0; i < 12; ++i)
      for (int j = 0; j < 12; ++j)
        for (int k = 0; k < 12; ++k) {
          int f[3] = {i, j, k};
          std::sort(f, f + 3);
          const double p = pairs[static_cast<size_t>(f[0])].lambda * pairs[static_cast<size_t>(f[1])].lambda *
                           pairs[static_cast<size_t>(f[2])].lambda;
          all.push_back({i, j, k, p});
        }
    std::stable_sort(all.begin(), all.end(), [](const Cand& a, const Cand& b) {
      if (a.product != b.product) return a.product > b.product;
      if (a.i + a.j + a.k != b.i + b.j + b.k) return a.i + a.j + a.k < b.i + b.j + b.k;
      if (a.i != b.i) return a.i < b.i;
      return a.j < b.j;
    });
    const std::vector<kl::Mode<3>> modes = kl::modes<3>(l, m);
    REQUIRE(modes.size() == static_cast<size_t>(m));
    for (int k = 0; k < m; ++k) {
      CAPTURE(k);
      const kl::Mode<3>& mode = modes[static_cast<size_t>(k)];
      const Cand& c = all[static_cast<size_t>(k)];
      CHECK(mode.index[0] == c.i);
      CHECK(mode.index[1] == c.j);
      CHECK(mode.index[2] == c.k);
      CHECK(mode.weight == doctest::Approx(std::sqrt(c.product)).epsilon(1e-15));
      if (k > 0) CHECK(mode.weight <= modes[static_cast<size_t>(k - 1)].weight);
    }
  }
  // The default deck's first four: (0,0,0), then the tie (0,0,1) < (0,1,0) < (1,0,0).
  const std::vector<kl::Mode<3>> modes = kl::modes<3>(0.5, 4);
  CHECK((modes[0].index == std::array<int, 3>{0, 0, 0}));
  CHECK((modes[1].index == std::array<int, 3>{0, 0, 1}));
  CHECK((modes[2].index == std::array<int, 3>{0, 1, 0}));
  CHECK((modes[3].index == std::array<int, 3>{1, 0, 0}));
}

TEST_CASE("a 3D sample is [b, 1, n, n, n] and depends only on (seed, global index)") {
  const KlSampler<3> sampler(settings_with(6), 7);
  Tensor abc, c_alone, ba, other_seed;
  sampler.sample(11, {5, 9, 2}, abc);
  sampler.sample(11, {2}, c_alone);
  sampler.sample(11, {9, 5}, ba);
  sampler.sample(12, {5}, other_seed);
  REQUIRE(abc.shape() == Shape{3, 1, 7, 7, 7});
  CHECK(field_of(abc, 2) == field_of(c_alone, 0));
  CHECK(field_of(abc, 0) == field_of(ba, 1));
  CHECK(field_of(abc, 1) == field_of(ba, 0));
  CHECK(field_of(abc, 0) != field_of(abc, 1));
  CHECK(field_of(abc, 0) != field_of(other_seed, 0));
  const void* before = ba.raw();
  sampler.sample(11, {1, 3}, ba);
  CHECK(ba.raw() == before);
}

TEST_CASE("sampled 3D log nu is sigma times the KL sum at the nodes (fp64 reference)") {
  const int m = 9, n = 6;
  const double l = 0.3;
  PoissonSettings s = settings_with(m, l);
  s.sigma = 0.8;
  const KlSampler<3> sampler(s, n);
  std::vector<std::function<double(double)>> phi;
  std::vector<double> lambda;
  for (int k = 1; k <= m; ++k) {
    const double a = kl::root(k, l);
    phi.push_back(normalised_phi(a, l));
    lambda.push_back(2 * l / (1 + l * l * a * a));
  }
  const std::vector<uint64_t> gs = {3, 77777};
  Tensor t;
  sampler.sample(42, gs, t);
  for (size_t p = 0; p < gs.size(); ++p) {
    Vec ref(static_cast<size_t>(n * n * n));
    for (int k = 0; k < m; ++k) {
      const auto [mi, mj, mk] = sampler.modes()[static_cast<size_t>(k)].index;
      const double omega =
          s.omega_max * (2 * random_uniform(42, (uint64_t{4} << 32) | static_cast<uint64_t>(k), gs[p]) - 1);
      const double c = s.sigma * omega *
                       std::sqrt(lambda[static_cast<size_t>(mi)] * lambda[static_cast<size_t>(mj)] *
                                 lambda[static_cast<size_t>(mk)]);
      for (int z = 0; z < n; ++z)
        for (int y = 0; y < n; ++y)
          for (int x = 0; x < n; ++x)
            ref[static_cast<size_t>((z * n + y) * n + x)] += c *
                                                             phi[static_cast<size_t>(mi)](x / double(n - 1)) *
                                                             phi[static_cast<size_t>(mj)](y / double(n - 1)) *
                                                             phi[static_cast<size_t>(mk)](z / double(n - 1));
    }
    CHECK(rel_max_error(field_of(t, static_cast<int64_t>(p)), ref) < f32_tol);
  }
  // The modes the sampler uses are kl::modes<3>'s: checked above against brute force.
  const std::vector<kl::Mode<3>> expected = kl::modes<3>(l, m);
  for (int k = 0; k < m; ++k)
    CHECK(sampler.modes()[static_cast<size_t>(k)].index == expected[static_cast<size_t>(k)].index);
}

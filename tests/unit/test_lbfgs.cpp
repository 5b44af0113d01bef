// L-BFGS on its own: it minimises the Rosenbrock function (2D and 10D) and an ill-conditioned
// quadratic (condition number 1e4, n = 100) to tolerance within a bounded number of loss
// evaluations, with the strong-Wolfe line search and with Armijo backtracking; the per-step limits
// hold; curvature pairs are skipped or damped as documented; a checkpointed state continues
// bit-identically; the cubic interpolation of the line search has the known answer.
#include <omp.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <map>

#include "optim/lbfgs.hpp"
#include "optim/line_search.hpp"
#include "testing.hpp"

using namespace pdegen;
using namespace pdegen::testing;

namespace {

// One parameter vector of n values, started at x0.
struct Problem {
  ParameterRegistry registry;
  int64_t n;
  // f(x, grad): the loss in double at x, its gradient written into grad.
  std::function<double(const double* x, double* grad)> f;
  int64_t evaluations = 0;

  Problem(const Vec& x0, std::function<double(const double*, double*)> loss)
      : n(static_cast<int64_t>(x0.size())), f(std::move(loss)) {
    registry.add("x", Shape{n}, ParamInit::constant_value(0.0));
    registry.finalize(0);
    Tensor x = registry.value(0);
    copy_into(x, x0);
  }
  Vec x() const { return values_of(registry.value(0)); }
  double loss() const {
    Vec g(static_cast<size_t>(n));
    return f(x().data(), g.data());
  }
  // The closure: loss and fp32 gradient at the registry's values.
  LossClosure closure() {
    return [this] {
      ++evaluations;
      const Vec xs = x();
      Vec g(static_cast<size_t>(n));
      const double value = f(xs.data(), g.data());
      registry.zero_grads();
      Tensor grad = registry.grad(0);
      copy_into(grad, g);
      return value;
    };
  }
};

double rosenbrock(const double* x, double* g, int64_t n) {
  double f = 0;
  for (int64_t i = 0; i < n; ++i) g[i] = 0;
  for (int64_t i = 0; i + 1 < n; ++i) {
    const double a = x[i + 1] - x[i] * x[i], b = 1 - x[i];
    f += 100 * a * a + b * b;
    g[i] += -400 * a * x[i] - 2 * b;
    g[i + 1] += 200 * a;
  }
  return f;
}

// 1/2 (x - c)^T A (x - c) with A = Q diag(k) Q^T, k log-spaced from 1 to 1e4, Q a random rotation
// (Gram-Schmidt of a random matrix), so the conditioning is not aligned with the coordinates.
struct Quadratic {
  int64_t n;
  Vec a, c;
  explicit Quadratic(int64_t size)
      : n(size), a(static_cast<size_t>(size * size), 0.0), c(random_vec(static_cast<size_t>(size), 77)) {
    std::vector<Vec> q;
    for (int64_t j = 0; j < n; ++j) {
      Vec v = random_vec(static_cast<size_t>(n), 100 + static_cast<uint64_t>(j));
      for (const Vec& u : q) {
        const double p = dot(v, u);
        for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] -= p * u[static_cast<size_t>(i)];
      }
      const double norm = std::sqrt(dot(v, v));
      for (double& e : v) e /= norm;
      q.push_back(v);
    }
    for (int64_t j = 0; j < n; ++j) {
      const double k = std::pow(10.0, 4.0 * static_cast<double>(j) / static_cast<double>(n - 1));
      for (int64_t r = 0; r < n; ++r)
        for (int64_t s = 0; s < n; ++s)
          a[static_cast<size_t>(r * n + s)] += k * q[static_cast<size_t>(j)][static_cast<size_t>(r)] *
                                               q[static_cast<size_t>(j)][static_cast<size_t>(s)];
    }
  }
  double operator()(const double* x, double* g) const {
    Vec e(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) e[static_cast<size_t>(i)] = x[i] - c[static_cast<size_t>(i)];
    double f = 0;
    for (int64_t r = 0; r < n; ++r) {
      double ae = 0;
      for (int64_t s = 0; s < n; ++s) ae += a[static_cast<size_t>(r * n + s)] * e[static_cast<size_t>(s)];
      g[r] = ae;
      f += 0.5 * e[static_cast<size_t>(r)] * ae;
    }
    return f;
  }
};

OptimizerSettings lbfgs_settings(LineSearch search) {
  OptimizerSettings c;
  c.type = OptimizerKind::lbfgs;
  c.lr = 1;
  c.lbfgs.line_search = search;
  return c;
}

struct Outcome {
  int64_t evaluations = 0, steps = 0;
};

// Outer steps until f <= target or `max_steps`; checks the per-step evaluation limit.
Outcome minimise(Problem& p, const OptimizerSettings& c, double target, int max_steps) {
  auto opt = make_optimizer(c, p.registry);
  Outcome out;
  const LossClosure closure = p.closure();
  while (out.steps < max_steps && p.loss() > target) {
    const int64_t before = p.evaluations;
    const StepResult r = opt->step(p.registry, c.lr, closure, 0);
    CHECK(r.evaluations == p.evaluations - before);
    CHECK(r.evaluations <= std::max(c.lbfgs.max_evaluations, 2));
    ++out.steps;
  }
  out.evaluations = p.evaluations;
  return out;
}

Vec rosenbrock_start(int64_t n) {
  Vec x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) x[static_cast<size_t>(i)] = i % 2 == 0 ? -1.2 : 1.0;
  return x;
}

}  // namespace

TEST_CASE("lbfgs minimises the Rosenbrock function in 2D and 10D within a bounded number of evaluations") {
  for (LineSearch search : {LineSearch::strong_wolfe, LineSearch::backtracking})
    for (int64_t n : {2, 10}) {
      CAPTURE(name_of(search));
      CAPTURE(n);
      Problem p(rosenbrock_start(n), [n](const double* x, double* g) { return rosenbrock(x, g, n); });
      const Outcome out = minimise(p, lbfgs_settings(search), 1e-8, 40);
      MESSAGE(name_of(search), " n=", n, ": ", out.evaluations, " evaluations in ", out.steps,
              " steps, f = ", p.loss());
      CHECK(p.loss() <= 1e-8);
      // Measured: 45-50 evaluations in 2D, 94-95 in 10D.
      CHECK(out.evaluations <= (n == 2 ? 100 : 200));
      for (double xi : p.x()) CHECK(xi == doctest::Approx(1.0).epsilon(1e-3));
    }
}

TEST_CASE(
    "lbfgs minimises an ill-conditioned quadratic (condition 1e4, n = 100) within a bounded number of "
    "evaluations") {
  const Quadratic q(100);
  for (LineSearch search : {LineSearch::strong_wolfe, LineSearch::backtracking}) {
    CAPTURE(name_of(search));
    Problem p(Vec(100, 0.0), [&](const double* x, double* g) { return q(x, g); });
    const double f0 = p.loss();
    const Outcome out = minimise(p, lbfgs_settings(search), 1e-10 * f0, 40);
    MESSAGE(name_of(search), ": ", out.evaluations, " evaluations in ", out.steps,
            " steps, f / f0 = ", p.loss() / f0);
    CHECK(p.loss() <= 1e-10 * f0);
    // Measured: 455 (strong Wolfe) and 435 (backtracking) evaluations, about one per iteration.
    CHECK(out.evaluations <= 600);
  }
}

TEST_CASE("lbfgs keeps its per-step limits: max_iterations and max_evaluations") {
  const Quadratic q(100);
  for (auto [iterations, evaluations] : {std::pair{1, 25}, std::pair{5, 8}, std::pair{20, 3}}) {
    CAPTURE(iterations);
    CAPTURE(evaluations);
    Problem p(Vec(100, 0.0), [&](const double* x, double* g) { return q(x, g); });
    OptimizerSettings c = lbfgs_settings(LineSearch::strong_wolfe);
    c.lbfgs.max_iterations = iterations;
    c.lbfgs.max_evaluations = evaluations;
    auto opt = make_optimizer(c, p.registry);
    const auto* lbfgs = dynamic_cast<const Lbfgs*>(opt.get());
    REQUIRE(lbfgs);
    const LossClosure closure = p.closure();
    for (int step = 1; step <= 4; ++step) {
      const int64_t before = lbfgs->iterations();
      const StepResult r = opt->step(p.registry, 1.0, closure, 0);
      CHECK(r.evaluations <= evaluations);
      CHECK(lbfgs->iterations() - before <= iterations);
      CHECK(opt->step_count() == step);
    }
  }
}

TEST_CASE("lbfgs skips curvature pairs with s.y <= curvature_eps * y.y and keeps the others") {
  const Quadratic q(100);
  for (double eps : {1e-10, 1e30}) {
    CAPTURE(eps);
    Problem p(Vec(100, 0.0), [&](const double* x, double* g) { return q(x, g); });
    OptimizerSettings c = lbfgs_settings(LineSearch::strong_wolfe);
    c.lbfgs.curvature_eps = eps;
    auto opt = make_optimizer(c, p.registry);
    const auto* lbfgs = dynamic_cast<const Lbfgs*>(opt.get());
    const double f0 = p.loss();
    const LossClosure closure = p.closure();
    opt->step(p.registry, 1.0, closure, 0);
    CHECK(p.loss() < f0);
    if (eps < 1) {
      // A convex quadratic: every pair has s.y > 0, the history fills up.
      CHECK(lbfgs->skipped_pairs() == 0);
      CHECK(lbfgs->pairs() == c.lbfgs.history);
    } else {
      // Every pair refused: steepest descent with the line search.
      CHECK(lbfgs->pairs() == 0);
      CHECK(lbfgs->skipped_pairs() == lbfgs->iterations() - 1);
    }
  }
}

TEST_CASE("Powell damping keeps the pairs that negative curvature would skip") {
  // sum_i cos(x_i) + 0.05 x_i^2 from near 0, where the curvature is negative: the first pairs
  // have s.y < 0. Backtracking, since the strong Wolfe curvature condition guarantees s.y > 0.
  // Both variants reach a minimum (|g| small); only the damped one keeps every pair.
  const int64_t n = 8;
  auto f = [n](const double* x, double* g) {
    double v = 0;
    for (int64_t i = 0; i < n; ++i) {
      v += std::cos(x[i]) + 0.05 * x[i] * x[i];
      g[i] = -std::sin(x[i]) + 0.1 * x[i];
    }
    return v;
  };
  const Vec start = random_vec(static_cast<size_t>(n), 3, -0.3, 0.3);
  for (bool damping : {false, true}) {
    CAPTURE(damping);
    Problem p(start, f);
    OptimizerSettings c = lbfgs_settings(LineSearch::backtracking);
    c.lbfgs.damping = damping;
    auto opt = make_optimizer(c, p.registry);
    const auto* lbfgs = dynamic_cast<const Lbfgs*>(opt.get());
    const LossClosure closure = p.closure();
    for (int step = 0; step < 5; ++step) opt->step(p.registry, 1.0, closure, 0);
    const Vec x = p.x();
    Vec g(static_cast<size_t>(n));
    f(x.data(), g.data());
    for (double gi : g) CHECK(std::abs(gi) < 1e-4);
    MESSAGE("damping ", damping, ": ", lbfgs->skipped_pairs(), " pairs skipped of ", lbfgs->iterations() - 1);
    if (damping)
      CHECK(lbfgs->skipped_pairs() == 0);
    else
      CHECK(lbfgs->skipped_pairs() > 0);
  }
}

TEST_CASE("a restored lbfgs state continues bit-identically") {
  const Quadratic q(100);
  auto loss = [&](const double* x, double* g) { return q(x, g); };
  const OptimizerSettings c = lbfgs_settings(LineSearch::strong_wolfe);
  Problem run(Vec(100, 0.0), loss);
  auto opt = make_optimizer(c, run.registry);
  const LossClosure closure = run.closure();
  for (int step = 0; step < 2; ++step) opt->step(run.registry, 1.0, closure, 0);

  Problem restarted(run.x(), loss);
  auto resumed = make_optimizer(c, restarted.registry);
  opt->gather_state();
  auto saved = opt->state(), fresh = resumed->state();
  REQUIRE(saved.size() == fresh.size());
  for (size_t i = 0; i < saved.size(); ++i) {
    CHECK(saved[i].first == fresh[i].first);
    fresh[i].second->copy_from(*saved[i].second);
  }
  resumed->set_step_count(opt->step_count());
  resumed->scatter_state();
  const LossClosure restarted_closure = restarted.closure();
  for (int step = 0; step < 2; ++step) {
    opt->step(run.registry, 1.0, closure, 0);
    resumed->step(restarted.registry, 1.0, restarted_closure, 0);
    CHECK(run.x() == restarted.x());
  }
}

TEST_CASE("the vector-free direction equals the classic two-loop recursion on the stored pairs") {
  // After a step the state holds the last direction d, the gradient g it was computed from (the
  // "previous gradient" of the next pair), the pairs and H_diag: d must be the classic two-loop
  // recursion (Nocedal & Wright, algorithm 7.4) of g, computed here naively in fp64.
  const Quadratic q(100);
  for (int iterations : {3, 12}) {  // history partly filled, and full with pairs dropped
    CAPTURE(iterations);
    Problem p(Vec(100, 0.0), [&](const double* x, double* g) { return q(x, g); });
    OptimizerSettings c = lbfgs_settings(LineSearch::strong_wolfe);
    c.lbfgs.history = 6;
    c.lbfgs.max_iterations = iterations;
    c.lbfgs.max_evaluations = 100;
    auto opt = make_optimizer(c, p.registry);
    opt->step(p.registry, 1.0, p.closure(), 0);
    opt->gather_state();
    std::map<std::string, Vec> state;
    for (auto& [name, t] : opt->state())
      state[name] =
          t->dtype() == DType::f64 ? Vec(t->data<double>(), t->data<double>() + t->numel()) : values_of(*t);
    const int k = static_cast<int>(state["lbfgs_scalars"][0]);
    CHECK(k == std::min(iterations - 1, 6));
    const double h_diag = state["lbfgs_scalars"][2];
    const size_t n = state["lbfgs_prev_grad"].size();  // the flat buffer, with its padding
    auto vec = [&](const char* name, int j) {
      const Vec& all = state[name];
      return Vec(all.begin() + static_cast<long>(j * n), all.begin() + static_cast<long>((j + 1) * n));
    };
    Vec d = state["lbfgs_prev_grad"];
    for (double& v : d) v = -v;
    std::vector<double> alpha(static_cast<size_t>(k));
    for (int i = k - 1; i >= 0; --i) {
      const Vec s = vec("lbfgs_s", i), y = vec("lbfgs_y", i);
      alpha[static_cast<size_t>(i)] = dot(s, d) / dot(y, s);
      for (size_t e = 0; e < n; ++e) d[e] -= alpha[static_cast<size_t>(i)] * y[e];
    }
    for (double& v : d) v *= h_diag;
    for (int i = 0; i < k; ++i) {
      const Vec s = vec("lbfgs_s", i), y = vec("lbfgs_y", i);
      const double beta = dot(y, d) / dot(y, s);
      for (size_t e = 0; e < n; ++e) d[e] += s[e] * (alpha[static_cast<size_t>(i)] - beta);
    }
    // H_diag is s.y / y.y of the newest pair.
    if (k > 0) {
      const Vec s = vec("lbfgs_s", k - 1), y = vec("lbfgs_y", k - 1);
      CHECK(h_diag == doctest::Approx(dot(s, y) / dot(y, y)).epsilon(1e-9));
    }
    CHECK(rel_max_error(state["lbfgs_direction"], d) < 1e-5);
  }
}

TEST_CASE("lbfgs iterates have the same bits for any number of threads") {
  // Long enough (30000 values) for the dot products to span two reduction chunks.
  const int64_t n = 30000;
  auto f = [n](const double* x, double* g) {
    double v = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double k = 1 + static_cast<double>(i % 97), e = x[i] - 0.5;
      v += 0.5 * k * e * e;
      g[i] = k * e;
    }
    return v;
  };
  std::vector<Vec> results;
  for (int threads : {1, 2, 3}) {
    omp_set_num_threads(threads);
    Problem p(Vec(static_cast<size_t>(n), 0.0), f);
    auto opt = make_optimizer(lbfgs_settings(LineSearch::strong_wolfe), p.registry);
    const LossClosure closure = p.closure();
    for (int step = 0; step < 2; ++step) opt->step(p.registry, 1.0, closure, 0);
    results.push_back(p.x());
  }
  omp_set_num_threads(2);
  CHECK(results[0] == results[1]);
  CHECK(results[0] == results[2]);
}

TEST_CASE("lbfgs takes no step from a non-finite loss and refuses the step without a closure") {
  Problem p(Vec{1.0, 2.0}, [](const double*, double* g) {
    g[0] = g[1] = 0;
    return NAN;
  });
  auto opt = make_optimizer(lbfgs_settings(LineSearch::strong_wolfe), p.registry);
  const StepResult r = opt->step(p.registry, 1.0, p.closure(), 0);
  CHECK(std::isnan(r.loss));
  CHECK(r.evaluations == 1);
  CHECK_FALSE(r.updated);
  CHECK(p.x() == Vec{1.0, 2.0});
  CHECK_THROWS(opt->step(p.registry, 1.0));
  // A finite loss with an unusable gradient (overflow under loss scaling) takes no step either.
  const StepResult overflow = opt->step(
      p.registry, 1.0, [] { return Evaluation(3.0, false); }, 0);
  CHECK(overflow.loss == 3.0);
  CHECK_FALSE(overflow.updated);
  CHECK(p.x() == Vec{1.0, 2.0});
}

TEST_CASE("the cubic interpolation finds the minimiser of a cubic, clamped, or the middle without one") {
  // f(x) = x^3 - 3x: f(0) = 0, f'(0) = -3, f(2) = 2, f'(2) = 9; minimum at x = 1.
  CHECK(cubic_minimum(0, 0, -3, 2, 2, 9, 0, 2) == doctest::Approx(1.0));
  CHECK(cubic_minimum(2, 2, 9, 0, 0, -3, 0, 2) == doctest::Approx(1.0));
  CHECK(cubic_minimum(0, 0, -3, 2, 2, 9, 1.5, 2) == 1.5);
  // (2/3) x^3 - x^2 + x through (0, 0, 1) and (1, 2/3, 1) increases everywhere: no minimiser.
  CHECK(cubic_minimum(0, 0, 1, 1, 2.0 / 3, 1, 0, 1) == 0.5);
  CHECK(cubic_minimum(0, INFINITY, 1, 1, 0, NAN, 0, 1) == 0.5);
}

// The conformance suite every Problem runs: the promises of the Problem interface checked the same
// way for each problem (shapes; the loss gradient and the lift-then-loss gradient against central
// differences; the reference solution's residual; samples that depend only on (seed, index)). The
// checks are functions that measure, so the suite can also show that it catches a problem whose
// gradient is wrong.
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <tuple>

#include "physics/problem.hpp"
#include "testing.hpp"

using namespace pdegen;
using testing::Vec;

namespace {

struct Case {
  std::string name;
  ProblemConfig config;
  // The reference's loss gradient on the free nodes over the lift of zero's (reference_residual):
  // ~0 where the reference solves the loss's own discrete system (poisson), the discretisation gap
  // where it is another scheme (burgers' finite volumes).
  double reference_tolerance = 1e-5;
  int64_t free_node = 2;  // a node of sample 0 that the lift leaves free
};

Case make_case(PdeKind pde, int n, LossKind loss, double source) {
  Case c;
  c.config.pde = pde;
  c.config.resolution = n;
  c.config.loss = loss;
  c.config.poisson.source = source;
  c.config.poisson.kl_modes = 6;
  c.name = fmt::format("{} {} {} source {}", name_of(pde), n, name_of(loss), source);
  c.free_node = 2;  // not on x = 0 or x = 1
  return c;
}

// burgers1d on nx x nt nodes: smooth initial conditions (c in [1, 1.5]) so that the coarse grid
// resolves the solution the reference is compared with; inviscid cases end at T = 0.15, before the
// first shock (t = 1 / (pi c) >= 0.21).
Case burgers_case(int nx, int nt, LossKind loss, double viscosity, BoundaryTreatment boundary,
                  double reference_tolerance) {
  Case c;
  c.config.pde = PdeKind::burgers1d;
  c.config.resolution = nx;
  c.config.loss = loss;
  c.config.burgers.time_resolution = nt;
  c.config.burgers.viscosity = viscosity;
  c.config.burgers.t_final = viscosity > 0 ? 0.5 : 0.15;
  c.config.burgers.c_min = 1.0;
  c.config.burgers.c_max = 1.5;
  c.config.burgers.ic_terms = 2;
  c.config.burgers.boundary = boundary;
  c.config.burgers.boundary_factor = 4.0;
  c.reference_tolerance = reference_tolerance;
  c.free_node = nx + 2;  // t = ht, x = 2 hx
  c.name = fmt::format("burgers1d {} x {} {} nu {} {}", nx, nt, name_of(loss), viscosity, name_of(boundary));
  return c;
}

std::vector<Case> cases() {
  std::vector<Case> all;
  for (LossKind loss : {LossKind::energy, LossKind::residual}) {
    all.push_back(make_case(PdeKind::poisson2d, 9, loss, 0.0));
    all.push_back(make_case(PdeKind::poisson2d, 7, loss, 0.8));
    all.push_back(make_case(PdeKind::poisson3d, 6, loss, 0.0));
    all.push_back(make_case(PdeKind::poisson3d, 5, loss, 0.8));
  }
  // The inverse map u -> log nu, data-free: its loss is the forward residual with the predicted nu.
  for (auto [pde, n, source] :
       {std::tuple{PdeKind::poisson2d, 9, 0.0}, {PdeKind::poisson2d, 7, 0.8}, {PdeKind::poisson3d, 6, 0.0}}) {
    Case c = make_case(pde, n, LossKind::residual, source);
    c.config.map = ProblemMap::inverse;
    c.name += " inverse";
    all.push_back(c);
  }
  // Measured: 0.040, 0.0049, 0.0042, 0.026 (a wrong sign or scale of any term gives order 1).
  all.push_back(burgers_case(17, 9, LossKind::residual, 0.05, BoundaryTreatment::exact, 0.08));
  all.push_back(burgers_case(17, 9, LossKind::residual, 0.0, BoundaryTreatment::exact, 0.01));
  all.push_back(burgers_case(17, 9, LossKind::least_squares, 0.0, BoundaryTreatment::exact, 0.01));
  all.push_back(burgers_case(12, 8, LossKind::residual, 0.02, BoundaryTreatment::penalty, 0.05));
  return all;
}

std::unique_ptr<Problem> build(const ProblemConfig& config) {
  EvaluationConfig evaluation;
  return make_problem(config, evaluation);
}

// A problem with one flaw planted in its loss gradient: d_u at node `node` is off by `delta` times
// the gradient's largest component.
class FlawedGradient final : public Problem {
 public:
  FlawedGradient(std::unique_ptr<Problem> inner, int64_t node, float delta)
      : inner_(std::move(inner)), node_(node), delta_(delta) {}
  std::string_view name() const override { return inner_->name(); }
  Shape sample_shape() const override { return inner_->sample_shape(); }
  Shape input_shape() const override { return inner_->input_shape(); }
  void sample(uint64_t seed, const std::vector<uint64_t>& idx, Tensor& input) const override {
    inner_->sample(seed, idx, input);
  }
  Tensor lift(const Tensor& v, const Tensor& input) const override { return inner_->lift(v, input); }
  Tensor lift_backward(const Tensor& du) const override { return inner_->lift_backward(du); }
  double loss(const Tensor& u, const Tensor& input, double scale, Tensor* du,
              std::vector<double>* per) const override {
    const double value = inner_->loss(u, input, scale, du, per);
    if (du != nullptr) {
      float* g = du->data<float>();
      float largest = 0;
      for (int64_t i = 0; i < du->numel(); ++i) largest = std::max(largest, std::abs(g[i]));
      g[node_] += delta_ * largest;
    }
    return value;
  }
  Tensor reference(const Tensor& input, ReferenceReport* report) const override {
    return inner_->reference(input, report);
  }
  Tensor reference_of(uint64_t seed, const std::vector<uint64_t>& idx, const Tensor& input,
                      ReferenceReport* report) const override {
    return inner_->reference_of(seed, idx, input, report);
  }
  std::string input_name() const override { return inner_->input_name(); }
  std::vector<double> origin() const override { return inner_->origin(); }
  std::vector<double> spacing() const override { return inner_->spacing(); }

 private:
  std::unique_ptr<Problem> inner_;
  int64_t node_;
  float delta_;
};

// Two samples of the problem and a smooth-ish field v of the batch shape.
struct Batch {
  Tensor input, v;
};

const std::vector<uint64_t> batch_indices{3, 11};

Batch make_batch(const Problem& p) {
  Batch b;
  p.sample(7, batch_indices, b.input);
  b.v = testing::tensor_from(testing::random_vec(static_cast<size_t>(p.batch_shape(2).numel()), 41, 0, 1),
                             p.batch_shape(2));
  return b;
}

double loss_of(const Problem& p, const Tensor& u, const Tensor& input) {
  return p.loss(u, input, 1.0, nullptr, nullptr);
}

// Largest |analytic - central difference| over every `stride`-th node, relative to the largest
// analytic component. The poisson losses are quadratic in u, so central differences are exact up to
// rounding; burgers' are quartic, and the step of 2^-10 leaves their third-derivative term near 1e-7
// of the gradient: any real disagreement is a wrong gradient. The step is the one fp32 took.
double gradient_error(const Problem& p, const Batch& b, bool through_lift, int stride) {
  auto total = [&](const Tensor& v) { return loss_of(p, through_lift ? p.lift(v, b.input) : v, b.input); };
  Tensor du;
  const Tensor u = through_lift ? p.lift(b.v, b.input) : b.v;
  p.loss(u, b.input, 1.0, &du, nullptr);
  const Tensor g = through_lift ? p.lift_backward(du) : du;
  const Vec analytic = testing::values_of(g);
  double scale = 1e-12, err = 0;
  for (double a : analytic) scale = std::max(scale, std::abs(a));
  const float h = 1.0f / 1024;
  for (size_t i = 0; i < analytic.size(); i += static_cast<size_t>(stride)) {
    Tensor plus = b.v.clone(), minus = b.v.clone();
    plus.data<float>()[i] += h;
    minus.data<float>()[i] -= h;
    const double step = static_cast<double>(plus.data<float>()[i]) - minus.data<float>()[i];
    const double fd = (total(plus) - total(minus)) / step;
    err = std::max(err, std::abs(fd - analytic[i]));
  }
  return err / scale;
}

// ||m * dL/du|| at the reference over the same at the lift of zero: near zero when the reference
// minimises (energy) or zeroes (residual) the discrete problem the loss measures.
double reference_residual(const Problem& p, const Batch& b) {
  ReferenceReport report;
  const Tensor ref = p.reference_of(7, batch_indices, b.input, &report);
  auto free_gradient_norm = [&](const Tensor& u) {
    Tensor du;
    p.loss(u, b.input, 1.0, &du, nullptr);
    const Vec g = testing::values_of(p.lift_backward(du));
    double s = 0;
    for (double x : g) s += x * x;
    return std::sqrt(s);
  };
  Tensor zero = Tensor::empty(b.v.shape());
  zero.fill(0.0f);
  return free_gradient_norm(ref) / free_gradient_norm(p.lift(zero, b.input));
}

}  // namespace

TEST_CASE("every problem's shapes agree: samples, lift, loss gradient, reference") {
  for (const Case& c : cases()) {
    CAPTURE(c.name);
    const auto p = build(c.config);
    const Shape batch = p->batch_shape(2);
    CHECK(batch.rank() == p->sample_shape().rank() + 1);
    CHECK(p->batch_shape(0).numel() == 0);
    CHECK(p->origin().size() == p->spacing().size());
    CHECK(static_cast<int>(p->origin().size()) == p->sample_shape().rank() - 1);
    const Batch b = make_batch(*p);
    CHECK(b.input.shape() == p->input_batch_shape(2));
    CHECK(p->input_shape().rank() == p->sample_shape().rank());
    CHECK(p->lift(b.v, b.input).shape() == batch);
    Tensor du;
    p->loss(p->lift(b.v, b.input), b.input, 1.0, &du, nullptr);
    CHECK(du.shape() == batch);
    CHECK(p->lift_backward(du).shape() == batch);
    std::vector<double> per;
    const double sum = p->loss(p->lift(b.v, b.input), b.input, 1.0, nullptr, &per);
    REQUIRE(per.size() == 2);
    CHECK(per[0] + per[1] == doctest::Approx(sum).epsilon(1e-12));
    CHECK(p->reference_of(7, batch_indices, b.input, nullptr).shape() == batch);
  }
}

TEST_CASE("every problem's loss gradient matches central differences, with and without the lift") {
  for (const Case& c : cases()) {
    CAPTURE(c.name);
    const auto p = build(c.config);
    const Batch b = make_batch(*p);
    CHECK(gradient_error(*p, b, false, 3) < 1e-4);
    CHECK(gradient_error(*p, b, true, 3) < 1e-4);
  }
}

TEST_CASE("the gradient check catches a loss gradient that is wrong at one node") {
  for (const Case& c : cases()) {
    CAPTURE(c.name);
    auto inner = build(c.config);
    const Batch b = make_batch(*inner);
    // The case's free node is among the nodes checked (every one).
    const FlawedGradient flawed(build(c.config), c.free_node, 1e-2f);
    CHECK(gradient_error(flawed, b, false, 1) > 1e-3);
    CHECK(gradient_error(flawed, b, true, 1) > 1e-3);
  }
}

TEST_CASE("every problem's reference solution has a vanishing loss gradient on the free nodes") {
  for (const Case& c : cases()) {
    CAPTURE(c.name);
    const auto p = build(c.config);
    const Batch b = make_batch(*p);
    // fp32 storage of u_ref bounds how small it gets for poisson.
    const double residual = reference_residual(*p, b);
    CHECK(residual < c.reference_tolerance);
  }
}

TEST_CASE("every problem's samples depend only on (seed, global index)") {
  for (const Case& c : cases()) {
    CAPTURE(c.name);
    const auto p = build(c.config);
    Tensor batch, alone, again, other_seed;
    p->sample(5, {100, 7, 2048}, batch);
    p->sample(5, {7}, alone);
    p->sample(5, {2048, 100, 7}, again);
    p->sample(6, {7}, other_seed);
    const Vec row = testing::values_of(batch.slice_batch(1, 2)), single = testing::values_of(alone);
    CHECK(row == single);
    CHECK(testing::values_of(again.slice_batch(2, 3)) == single);
    CHECK(testing::values_of(other_seed) != single);
  }
}

TEST_CASE("every problem's error metric is zero against itself and positive otherwise") {
  for (const Case& c : cases()) {
    CAPTURE(c.name);
    const auto p = build(c.config);
    const Batch b = make_batch(*p);
    const Tensor ref = p->reference_of(7, batch_indices, b.input, nullptr);
    for (double e : p->error(ref, ref)) CHECK(e == 0);
    for (double e : p->error(p->lift(b.v, b.input), ref)) CHECK(e > 0);
  }
}

// Optimizers, schedules and gradient clipping: Adam, AdamW and SGD against naive fp64 transcriptions
// of PyTorch's update rules, step by step; Adam on an ill-conditioned quadratic; the learning-rate
// schedules at chosen steps; global-norm clipping; checkpointed state giving bit-identical steps;
// the factory, the first-order closure step and the optimizer phases. (LARS and LAMB:
// test_lars_lamb.cpp; L-BFGS: test_lbfgs.cpp and test_mpi_lbfgs.cpp.)
#include <omp.h>

#include <cmath>
#include <cstring>
#include <numbers>

#include "optim/grad_clip.hpp"
#include "optim/optimizer.hpp"
#include "optim/phases.hpp"
#include "optim/schedule.hpp"
#include "testing.hpp"

using namespace pdegen;
using namespace pdegen::testing;

namespace {

// Two parameters whose sizes (37 and 15) leave alignment padding in the flat buffers.
struct Params {
  ParameterRegistry registry;
  Params() {
    registry.add("a", Shape{37}, ParamInit::uniform(1.0));
    registry.add("b", Shape{5, 3}, ParamInit::uniform(1.0));
    registry.finalize(3);
  }
  // Random gradients for step `step`, written into the parameters (the padding stays zero).
  void set_grads(int step) {
    registry.zero_grads();
    for (size_t i = 0; i < registry.params().size(); ++i) {
      Tensor g = registry.grad(static_cast<int>(i));  // a view of the flat buffer
      copy_into(g, random_vec(static_cast<size_t>(g.numel()), 1000 + 10 * step + i));
    }
  }
  Vec values() const { return values_of(registry.flat_values()); }
  Vec grads() const { return values_of(registry.flat_grads()); }
  // True when every padding entry of values and gradients is zero.
  bool padding_is_zero() const {
    const Vec v = values(), g = grads();
    std::vector<bool> used(v.size(), false);
    for (const Parameter& p : registry.params())
      for (int64_t j = 0; j < p.shape.numel(); ++j) used[static_cast<size_t>(p.offset + j)] = true;
    for (size_t i = 0; i < v.size(); ++i)
      if (!used[i] && (v[i] != 0 || g[i] != 0)) return false;
    return true;
  }
};

OptimizerConfig adam_config(OptimizerKind type) {
  OptimizerConfig c;
  c.type = type;
  // Far from the defaults, so that a misplaced eps, beta or decay term shows.
  c.lr = 0.05;
  c.weight_decay = 0.1;
  c.adam.beta1 = 0.8;
  c.adam.beta2 = 0.95;
  c.adam.eps = 1e-3;
  return c;
}

OptimizerConfig sgd_config(double momentum, bool nesterov, double weight_decay) {
  OptimizerConfig c;
  c.type = OptimizerKind::sgd;
  c.lr = 0.1;
  c.weight_decay = weight_decay;
  c.momentum.momentum = momentum;
  c.momentum.nesterov = nesterov;
  return c;
}

// torch.optim.Adam / AdamW (amsgrad off), one step t (1-based), in double.
void reference_adam(Vec& p, Vec& m, Vec& v, const Vec& g, int t, const OptimizerConfig& c, bool decoupled) {
  const double b1 = c.adam.beta1, b2 = c.adam.beta2;
  for (size_t i = 0; i < p.size(); ++i) {
    double grad = g[i];
    if (decoupled)
      p[i] *= 1 - c.lr * c.weight_decay;
    else
      grad += c.weight_decay * p[i];
    m[i] = b1 * m[i] + (1 - b1) * grad;
    v[i] = b2 * v[i] + (1 - b2) * grad * grad;
    const double m_hat = m[i] / (1 - std::pow(b1, t));
    const double denom = std::sqrt(v[i]) / std::sqrt(1 - std::pow(b2, t)) + c.adam.eps;
    p[i] -= c.lr * m_hat / denom;
  }
}

// torch.optim.SGD (dampening 0), one step; `first` says whether the momentum buffer is new.
void reference_sgd(Vec& p, Vec& buf, const Vec& g, bool first, const OptimizerConfig& c) {
  const double mu = c.momentum.momentum;
  for (size_t i = 0; i < p.size(); ++i) {
    double d = g[i] + c.weight_decay * p[i];
    if (mu != 0) {
      buf[i] = first ? d : mu * buf[i] + d;
      d = c.momentum.nesterov ? d + mu * buf[i] : buf[i];
    }
    p[i] -= c.lr * d;
  }
}

// Runs 5 steps of the optimizer and of `reference` side by side, comparing after each.
template <class Reference>
void check_against_reference(const OptimizerConfig& config, Reference reference) {
  Params params;
  auto opt = make_optimizer(config, params.registry);
  Vec p = params.values(), s1(p.size(), 0.0), s2(p.size(), 0.0);
  for (int step = 1; step <= 5; ++step) {
    CAPTURE(step);
    params.set_grads(step);
    reference(p, s1, s2, params.grads(), step);
    opt->step(params.registry, config.lr);
    CHECK(opt->step_count() == step);
    CHECK(rel_max_error(params.values(), p) < 1e-6);
    CHECK(params.padding_is_zero());
  }
}

}  // namespace

TEST_CASE("adam matches PyTorch's update with L2 weight decay, step by step in fp64") {
  const OptimizerConfig c = adam_config(OptimizerKind::adam);
  check_against_reference(
      c, [&](Vec& p, Vec& m, Vec& v, const Vec& g, int t) { reference_adam(p, m, v, g, t, c, false); });
}

TEST_CASE("adamw matches PyTorch's update with decoupled weight decay, step by step in fp64") {
  const OptimizerConfig c = adam_config(OptimizerKind::adamw);
  check_against_reference(
      c, [&](Vec& p, Vec& m, Vec& v, const Vec& g, int t) { reference_adam(p, m, v, g, t, c, true); });
}

TEST_CASE("sgd matches PyTorch's update: plain, momentum, Nesterov, weight decay") {
  for (const OptimizerConfig& c :
       {sgd_config(0, false, 0), sgd_config(0, false, 0.1), sgd_config(0.9, false, 0),
        sgd_config(0.9, false, 0.1), sgd_config(0.9, true, 0.1)}) {
    CAPTURE(c.momentum.momentum);
    CAPTURE(c.momentum.nesterov);
    CAPTURE(c.weight_decay);
    check_against_reference(
        c, [&](Vec& p, Vec& buf, Vec&, const Vec& g, int t) { reference_sgd(p, buf, g, t == 1, c); });
  }
}

TEST_CASE("adam minimises an ill-conditioned quadratic (condition number 1e4)") {
  // f(x) = 1/2 sum_i k_i (x_i - c_i)^2 with k_i from 1 to 1e4: plain gradient descent would need
  // ~1e4 steps; Adam's per-coordinate scaling does not care.
  ParameterRegistry registry;
  registry.add("x", Shape{32}, ParamInit::constant_value(0.0));
  registry.finalize(0);
  const int n = 32;
  Vec k(n), target = random_vec(n, 7);
  for (int i = 0; i < n; ++i) k[static_cast<size_t>(i)] = std::pow(10.0, 4.0 * i / (n - 1));
  auto f = [&](const float* x) {
    double s = 0;
    for (int i = 0; i < n; ++i)
      s += 0.5 * k[static_cast<size_t>(i)] * std::pow(x[i] - target[static_cast<size_t>(i)], 2);
    return s;
  };
  OptimizerConfig c;
  c.lr = 0.05;
  c.schedule.type = ScheduleKind::cosine;
  const int steps = 1500;
  auto opt = make_optimizer(c, registry);
  float* x = registry.flat_values().data<float>();
  float* g = registry.flat_grads().data<float>();
  const double f0 = f(x);
  for (int s = 0; s < steps; ++s) {
    for (int i = 0; i < n; ++i)
      g[i] = static_cast<float>(k[static_cast<size_t>(i)] * (x[i] - target[static_cast<size_t>(i)]));
    opt->step(registry, learning_rate(c, s, steps));
  }
  CHECK(f(x) < 1e-8 * f0);
  for (int i = 0; i < n; ++i) CHECK(x[i] == doctest::Approx(target[static_cast<size_t>(i)]).epsilon(1e-3));
}

TEST_CASE("constant, step and cosine schedules give the documented rates at chosen steps") {
  OptimizerConfig c;
  c.lr = 0.1;
  CHECK(learning_rate(c, 0, 100) == 0.1);
  CHECK(learning_rate(c, 99, 100) == 0.1);

  c.schedule.type = ScheduleKind::step;
  c.schedule.step_size = 10;
  c.schedule.gamma = 0.5;
  CHECK(learning_rate(c, 0, 100) == doctest::Approx(0.1));
  CHECK(learning_rate(c, 9, 100) == doctest::Approx(0.1));
  CHECK(learning_rate(c, 10, 100) == doctest::Approx(0.05));
  CHECK(learning_rate(c, 25, 100) == doctest::Approx(0.025));

  c.schedule.type = ScheduleKind::cosine;
  c.schedule.min_lr = 0.01;
  CHECK(learning_rate(c, 0, 101) == doctest::Approx(0.1));
  CHECK(learning_rate(c, 50, 101) == doctest::Approx(0.055));  // half way: the mean
  CHECK(learning_rate(c, 25, 101) == doctest::Approx(0.01 + 0.09 * (1 + std::cos(std::numbers::pi / 4)) / 2));
  CHECK(learning_rate(c, 100, 101) == doctest::Approx(0.01));  // the last step: min_lr
  CHECK(learning_rate(c, 150, 101) == doctest::Approx(0.01));  // past the end it stays there
  CHECK(learning_rate(c, 0, 1) == doctest::Approx(0.01));      // a one-step run is all last step
}

TEST_CASE("warm-up rises linearly from 0 to lr, then the schedule runs from the end of the warm-up") {
  OptimizerConfig c;
  c.lr = 0.1;
  c.schedule.warmup_steps = 4;
  CHECK(learning_rate(c, 0, 100) == doctest::Approx(0.025));
  CHECK(learning_rate(c, 1, 100) == doctest::Approx(0.05));
  CHECK(learning_rate(c, 3, 100) == doctest::Approx(0.1));
  CHECK(learning_rate(c, 4, 100) == doctest::Approx(0.1));

  c.schedule.type = ScheduleKind::step;
  c.schedule.step_size = 10;
  c.schedule.gamma = 0.5;
  CHECK(learning_rate(c, 13, 100) == doctest::Approx(0.1));  // 9 steps after the warm-up
  CHECK(learning_rate(c, 14, 100) == doctest::Approx(0.05));

  c.schedule.type = ScheduleKind::cosine;
  c.schedule.min_lr = 0.0;
  CHECK(learning_rate(c, 4, 105) == doctest::Approx(0.1));
  CHECK(learning_rate(c, 54, 105) == doctest::Approx(0.05));
  CHECK(learning_rate(c, 104, 105) == doctest::Approx(0.0));
}

TEST_CASE("gradient clipping measures the global L2 norm in double and scales down to the limit") {
  Params params;
  params.set_grads(1);
  const Vec g = params.grads();
  double sum = 0;
  for (double x : g) sum += x * x;
  const double norm = std::sqrt(sum);

  // Measuring only (limit 0) and a limit above the norm leave the gradients untouched.
  CHECK(clip_grad_norm(params.registry, 0.0) == doctest::Approx(norm).epsilon(1e-14));
  CHECK(clip_grad_norm(params.registry, 2 * norm) == doctest::Approx(norm).epsilon(1e-14));
  CHECK(params.grads() == g);

  // Above the limit: every gradient scaled by limit / (norm + 1e-6), the new norm is the limit.
  const double limit = norm / 3;
  CHECK(clip_grad_norm(params.registry, limit) == doctest::Approx(norm).epsilon(1e-14));
  Vec expected(g.size());
  for (size_t i = 0; i < g.size(); ++i) expected[i] = g[i] * limit / (norm + 1e-6);
  CHECK(rel_max_error(params.grads(), expected) < 1e-7);
  CHECK(global_norm(params.registry.flat_grads()) == doctest::Approx(limit).epsilon(1e-6));
  CHECK(params.padding_is_zero());
}

TEST_CASE("the global norm has the same bits for any number of threads") {
  Tensor t = Tensor::empty(Shape{100003});
  copy_into(t, random_vec(100003, 9));
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const double one = global_norm(t);
  omp_set_num_threads(3);
  const double three = global_norm(t);
  omp_set_num_threads(threads);
  CHECK(std::memcmp(&one, &three, sizeof one) == 0);
}

TEST_CASE("restoring the optimizer state and step count makes the next step bit-identical") {
  for (const OptimizerConfig& c : {adam_config(OptimizerKind::adam), adam_config(OptimizerKind::adamw),
                                   sgd_config(0.9, false, 0.1), sgd_config(0.9, true, 0)}) {
    CAPTURE(name_of(c.type));
    CAPTURE(c.momentum.nesterov);
    Params run;
    auto opt = make_optimizer(c, run.registry);
    for (int step = 1; step <= 3; ++step) {
      run.set_grads(step);
      opt->step(run.registry, c.lr);
    }
    // A "restarted" run: parameters, state tensors and step count copied over, as a checkpoint does.
    Params restarted;
    Tensor values = restarted.registry.flat_values();  // shares the registry's memory
    values.copy_from(run.registry.flat_values());
    auto resumed = make_optimizer(c, restarted.registry);
    auto saved = opt->state(), fresh = resumed->state();
    REQUIRE(saved.size() == fresh.size());
    REQUIRE_FALSE(saved.empty());
    for (size_t i = 0; i < saved.size(); ++i) {
      CHECK(saved[i].first == fresh[i].first);
      fresh[i].second->copy_from(*saved[i].second);
    }
    resumed->set_step_count(opt->step_count());

    run.set_grads(4);
    restarted.set_grads(4);
    opt->step(run.registry, c.lr);
    resumed->step(restarted.registry, c.lr);
    const Tensor &a = run.registry.flat_values(), &b = restarted.registry.flat_values();
    CHECK(std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0);
  }
}

TEST_CASE("the factory names its optimizers") {
  Params params;
  OptimizerConfig c;
  for (auto [type, name] : {std::pair{OptimizerKind::adam, "adam"}, std::pair{OptimizerKind::adamw, "adamw"},
                            std::pair{OptimizerKind::sgd, "sgd"}, std::pair{OptimizerKind::lbfgs, "lbfgs"},
                            std::pair{OptimizerKind::lars, "lars"}, std::pair{OptimizerKind::lamb, "lamb"}}) {
    c.type = type;
    CHECK(make_optimizer(c, params.registry)->name() == name);
  }
}

TEST_CASE(
    "the closure step of a first-order optimizer evaluates once, clips by the global norm, then steps") {
  const OptimizerConfig c = sgd_config(0, false, 0);
  Params params, reference;
  auto opt = make_optimizer(c, params.registry);
  auto plain = make_optimizer(c, reference.registry);
  int calls = 0;
  const LossClosure closure = [&] {
    ++calls;
    params.set_grads(1);
    return 2.5;
  };
  reference.set_grads(1);
  const double norm = global_norm(reference.registry.flat_grads());
  const StepResult r = opt->step(params.registry, c.lr, closure, 0.5 * norm);
  CHECK(calls == 1);
  CHECK(r.evaluations == 1);
  CHECK(r.updated);
  CHECK(r.loss == 2.5);
  CHECK(r.grad_norm == norm);
  clip_grad_norm(reference.registry, 0.5 * norm);
  plain->step(reference.registry, c.lr);
  CHECK(params.values() == reference.values());
  CHECK(opt->step_count() == 1);
  // A non-finite loss: nothing is touched, the trainer decides.
  const Vec before = params.values();
  const StepResult bad = opt->step(
      params.registry, c.lr, [] { return NAN; }, 0);
  CHECK(std::isnan(bad.loss));
  CHECK_FALSE(bad.updated);
  CHECK(params.values() == before);
  CHECK(opt->step_count() == 1);
  // A finite loss whose gradient is unusable (overflowed): nothing is touched either.
  const StepResult overflow = opt->step(
      params.registry, c.lr, [] { return Evaluation(1.5, /*gradient_usable=*/false); }, 0);
  CHECK(overflow.loss == 1.5);
  CHECK_FALSE(overflow.updated);
  CHECK(std::isnan(overflow.grad_norm));
  CHECK(params.values() == before);
  CHECK(opt->step_count() == 1);
}

TEST_CASE("optimizer phases: the phase of each step, its span and its own schedule") {
  OptimizerConfig c;
  c.lr = 1e-3;
  c.schedule.type = ScheduleKind::cosine;
  OptimizerPhase lbfgs;
  lbfgs.after_steps = 100;
  lbfgs.settings.type = OptimizerKind::lbfgs;
  lbfgs.settings.lr = 1;
  OptimizerPhase lamb;
  lamb.after_steps = 150;
  lamb.settings.type = OptimizerKind::lamb;
  lamb.settings.lr = 0.01;
  lamb.settings.schedule.warmup_steps = 10;
  c.phases = {lbfgs, lamb};
  const int64_t total = 200;
  auto phase = optimizer_phase(c, 0, total);
  CHECK(phase.index == 0);
  CHECK(phase.settings == &c);
  CHECK(phase.begin == 0);
  CHECK(phase.end == 100);
  // The cosine of the first phase runs over its 100 steps: lr at 0, min_lr at its last step.
  CHECK(phase_learning_rate(phase, 0) == 1e-3);
  CHECK(phase_learning_rate(phase, 99) == doctest::Approx(0.0));
  phase = optimizer_phase(c, 99, total);
  CHECK(phase.index == 0);
  phase = optimizer_phase(c, 100, total);
  CHECK(phase.index == 1);
  CHECK(phase.settings->type == OptimizerKind::lbfgs);
  CHECK(phase.begin == 100);
  CHECK(phase.end == 150);
  CHECK(phase_learning_rate(phase, 120) == 1);
  phase = optimizer_phase(c, 150, total);
  CHECK(phase.index == 2);
  CHECK(phase.end == total);
  // The warm-up counts from the phase's first step.
  CHECK(phase_learning_rate(phase, 150) == doctest::Approx(0.001));
  CHECK(phase_learning_rate(phase, 159) == doctest::Approx(0.01));
  // A phase beyond the run never starts.
  phase = optimizer_phase(c, 120, 130);
  CHECK(phase.index == 1);
  CHECK(phase.end == 130);
  // One optimizer for the whole run without phases.
  c.phases.clear();
  phase = optimizer_phase(c, 150, total);
  CHECK(phase.index == 0);
  CHECK(phase.end == total);
}

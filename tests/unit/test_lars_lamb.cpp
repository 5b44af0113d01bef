// LARS and LAMB against naive fp64 transcriptions of their update rules, step by step, on parameter
// tensors of different sizes (one spanning several reduction chunks, one with zero weights, one
// with a zero gradient) so the per-tensor trust ratios and their zero-norm cases all show; the
// per-parameter norms give the same bits for any number of threads; the deck's options reach them.
#include <omp.h>

#include <cmath>
#include <cstring>

#include "optim/optimizer.hpp"
#include "optim/parameter_chunks.hpp"
#include "testing.hpp"

using namespace pdegen;
using namespace pdegen::testing;

namespace {

// Parameters of different sizes: "big" spans two 16384-element chunks; "zero" starts at zero
// (||w|| = 0: trust ratio 1); "frozen" always gets a zero gradient (LARS: ||g|| = 0, ratio 1).
struct Params {
  ParameterRegistry registry;
  Params() {
    registry.add("a", Shape{37}, ParamInit::uniform(1.0));
    registry.add("big", Shape{20000}, ParamInit::uniform(0.05));
    registry.add("zero", Shape{5, 3}, ParamInit::constant_value(0.0));
    registry.add("frozen", Shape{9}, ParamInit::uniform(0.5));
    registry.finalize(11);
  }
  // Random gradients of step `step` (zero for "frozen"); the padding stays zero.
  void set_grads(int step) {
    registry.zero_grads();
    for (size_t i = 0; i < registry.params().size(); ++i) {
      if (registry.param(static_cast<int>(i)).name == "frozen") continue;
      Tensor g = registry.grad(static_cast<int>(i));
      copy_into(g, random_vec(static_cast<size_t>(g.numel()), 500 + 10 * step + i));
    }
  }
  // Per parameter, its values (or gradients) as fp64 vectors.
  std::vector<Vec> per_param(bool grads) const {
    std::vector<Vec> out;
    for (size_t i = 0; i < registry.params().size(); ++i)
      out.push_back(
          values_of(grads ? registry.grad(static_cast<int>(i)) : registry.value(static_cast<int>(i))));
    return out;
  }
  bool padding_is_zero() const {
    const Vec v = values_of(registry.flat_values()), g = values_of(registry.flat_grads());
    std::vector<bool> used(v.size(), false);
    for (const Parameter& p : registry.params())
      for (int64_t j = 0; j < p.shape.numel(); ++j) used[static_cast<size_t>(p.offset + j)] = true;
    for (size_t i = 0; i < v.size(); ++i)
      if (!used[i] && (v[i] != 0 || g[i] != 0)) return false;
    return true;
  }
};

double norm(const Vec& v) { return std::sqrt(dot(v, v)); }

// LARS as documented in lars.cpp, for one parameter tensor, in fp64.
void reference_lars(Vec& w, Vec& buf, const Vec& g, const OptimizerSettings& c) {
  const double wd = c.weight_decay, mu = c.momentum.momentum;
  const double wn = norm(w), gn = norm(g);
  const double ratio = wn > 0 && gn > 0 ? c.lars.trust_coefficient * wn / (gn + wd * wn + c.lars.eps) : 1.0;
  for (size_t i = 0; i < w.size(); ++i) {
    const double d = ratio * (g[i] + wd * w[i]);
    if (mu == 0) {
      w[i] -= c.lr * d;
      continue;
    }
    buf[i] = mu * buf[i] + d;
    w[i] -= c.lr * (c.momentum.nesterov ? d + mu * buf[i] : buf[i]);
  }
}

// LAMB as documented in lamb.cpp, step t (1-based), for one parameter tensor, in fp64.
void reference_lamb(Vec& w, Vec& m, Vec& v, const Vec& g, int t, const OptimizerSettings& c) {
  const double b1 = c.adam.beta1, b2 = c.adam.beta2;
  Vec u(w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    m[i] = b1 * m[i] + (1 - b1) * g[i];
    v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
    const double m_hat = m[i] / (1 - std::pow(b1, t)), v_hat = v[i] / (1 - std::pow(b2, t));
    u[i] = m_hat / (std::sqrt(v_hat) + c.adam.eps) + c.weight_decay * w[i];
  }
  const double wn = norm(w), un = norm(u);
  double ratio = wn > 0 && un > 0 ? wn / un : 1.0;
  if (c.lamb.max_trust_ratio > 0) ratio = std::min(ratio, c.lamb.max_trust_ratio);
  for (size_t i = 0; i < w.size(); ++i) w[i] -= c.lr * ratio * u[i];
}

// Runs 6 steps of `config` and of `reference` (per parameter tensor) side by side.
template <class Reference>
void check_steps(const OptimizerSettings& config, Reference reference) {
  Params params;
  auto opt = make_optimizer(config, params.registry);
  std::vector<Vec> w = params.per_param(false), s1, s2;
  for (const Vec& x : w) {
    s1.emplace_back(x.size(), 0.0);
    s2.emplace_back(x.size(), 0.0);
  }
  for (int step = 1; step <= 6; ++step) {
    CAPTURE(step);
    params.set_grads(step);
    const std::vector<Vec> g = params.per_param(true);
    for (size_t k = 0; k < w.size(); ++k) reference(w[k], s1[k], s2[k], g[k], step);
    opt->step(params.registry, config.lr);
    const std::vector<Vec> got = params.per_param(false);
    for (size_t k = 0; k < w.size(); ++k) {
      CAPTURE(params.registry.param(static_cast<int>(k)).name);
      CHECK(rel_max_error(got[k], w[k]) < 2e-6);
    }
    CHECK(params.padding_is_zero());
  }
}

OptimizerSettings lars_settings(double momentum, bool nesterov, double weight_decay) {
  OptimizerSettings c;
  c.type = OptimizerKind::lars;
  c.lr = 0.5;
  c.weight_decay = weight_decay;
  c.momentum.momentum = momentum;
  c.momentum.nesterov = nesterov;
  // Far from the defaults, so that a misplaced coefficient or eps shows.
  c.lars.trust_coefficient = 0.02;
  c.lars.eps = 1e-2;
  return c;
}

OptimizerSettings lamb_settings(double weight_decay, double max_trust_ratio) {
  OptimizerSettings c;
  c.type = OptimizerKind::lamb;
  c.lr = 0.01;
  c.weight_decay = weight_decay;
  c.adam.beta1 = 0.8;
  c.adam.beta2 = 0.95;
  c.adam.eps = 1e-3;
  c.lamb.max_trust_ratio = max_trust_ratio;
  return c;
}

}  // namespace

TEST_CASE("lars matches a naive fp64 reference step by step: plain, momentum, Nesterov, weight decay") {
  for (const OptimizerSettings& c : {lars_settings(0, false, 0), lars_settings(0.9, false, 0.01),
                                     lars_settings(0.8, true, 0.05), lars_settings(0, false, 0.1)}) {
    CAPTURE(c.momentum.momentum);
    CAPTURE(c.momentum.nesterov);
    CAPTURE(c.weight_decay);
    check_steps(c, [&](Vec& w, Vec& buf, Vec&, const Vec& g, int) { reference_lars(w, buf, g, c); });
  }
}

TEST_CASE("lamb matches a naive fp64 reference step by step: bias correction, weight decay, clamp") {
  // A clamp of 0.1 is active for "a" (ratio about 0.6) and "frozen" (zero gradient: u = wd w, ratio
  // 1 / wd = 10), not for "big" (about 0.03); 0 turns it off.
  for (const OptimizerSettings& c : {lamb_settings(0, 0), lamb_settings(0.1, 0), lamb_settings(0.1, 0.1)}) {
    CAPTURE(c.weight_decay);
    CAPTURE(c.lamb.max_trust_ratio);
    check_steps(c, [&](Vec& w, Vec& m, Vec& v, const Vec& g, int t) { reference_lamb(w, m, v, g, t, c); });
  }
}

TEST_CASE("the zero-norm cases take a trust ratio of 1") {
  // Zero weights: LARS and LAMB both step "zero" by lr times the (decayed) update, unscaled.
  for (OptimizerKind type : {OptimizerKind::lars, OptimizerKind::lamb}) {
    CAPTURE(name_of(type));
    Params params;
    OptimizerSettings c = type == OptimizerKind::lars ? lars_settings(0, false, 0) : lamb_settings(0, 0);
    auto opt = make_optimizer(c, params.registry);
    params.set_grads(1);
    const int id = param_id(params.registry, "zero");
    const Vec g = values_of(params.registry.grad(id));
    opt->step(params.registry, c.lr);
    const Vec w = values_of(params.registry.value(id));
    for (size_t i = 0; i < w.size(); ++i) {
      // LAMB's first step: m_hat = g, v_hat = g^2, so u = g / (|g| + eps).
      const double expected =
          type == OptimizerKind::lars ? -c.lr * g[i] : -c.lr * g[i] / (std::abs(g[i]) + c.adam.eps);
      CHECK(w[i] == doctest::Approx(expected).epsilon(1e-5));
    }
  }
  // A zero gradient (LARS) leaves the parameter as it was without weight decay.
  Params params;
  auto opt = make_optimizer(lars_settings(0, false, 0), params.registry);
  params.set_grads(1);
  const int id = param_id(params.registry, "frozen");
  const Vec before = values_of(params.registry.value(id));
  opt->step(params.registry, 0.5);
  CHECK(values_of(params.registry.value(id)) == before);
}

TEST_CASE("lars and lamb give the same bits for any number of threads") {
  for (const OptimizerSettings& c : {lars_settings(0.9, true, 0.01), lamb_settings(0.1, 0)}) {
    CAPTURE(name_of(c.type));
    std::vector<Vec> results;
    for (int threads : {1, 2, 3}) {
      omp_set_num_threads(threads);
      Params params;
      auto opt = make_optimizer(c, params.registry);
      for (int step = 1; step <= 3; ++step) {
        params.set_grads(step);
        opt->step(params.registry, c.lr);
      }
      results.push_back(values_of(params.registry.flat_values()));
    }
    omp_set_num_threads(2);
    CHECK(results[0] == results[1]);
    CHECK(results[0] == results[2]);
  }
}

TEST_CASE("parameter chunks cover every parameter element once and no padding") {
  Params params;
  const ParameterChunks chunks(params.registry);
  REQUIRE(chunks.params().size() == params.registry.params().size());
  std::vector<int> covered(static_cast<size_t>(params.registry.flat_values().numel()), 0);
  for (const auto& ch : chunks.chunks()) {
    CHECK(ch.end - ch.begin <= ParameterChunks::chunk_elements);
    const auto& range = chunks.params()[static_cast<size_t>(ch.param)];
    CHECK(ch.begin >= range.offset);
    CHECK(ch.end <= range.offset + range.numel);
    for (int64_t i = ch.begin; i < ch.end; ++i) ++covered[static_cast<size_t>(i)];
  }
  for (const Parameter& p : params.registry.params())
    for (int64_t j = 0; j < p.shape.numel(); ++j) CHECK(covered[static_cast<size_t>(p.offset + j)] == 1);
  int64_t total = 0;
  for (int c : covered) total += c;
  CHECK(total == params.registry.count());
}

TEST_CASE("lars and lamb keep their state in checkpoints: a restored run steps bit-identically") {
  for (const OptimizerSettings& c : {lars_settings(0.9, false, 0.01), lamb_settings(0.1, 2.0)}) {
    CAPTURE(name_of(c.type));
    Params run;
    auto opt = make_optimizer(c, run.registry);
    for (int step = 1; step <= 3; ++step) {
      run.set_grads(step);
      opt->step(run.registry, c.lr);
    }
    Params restarted;
    Tensor values = restarted.registry.flat_values();
    values.copy_from(run.registry.flat_values());
    auto resumed = make_optimizer(c, restarted.registry);
    opt->gather_state();
    auto saved = opt->state(), fresh = resumed->state();
    REQUIRE(saved.size() == fresh.size());
    REQUIRE_FALSE(saved.empty());
    for (size_t i = 0; i < saved.size(); ++i) fresh[i].second->copy_from(*saved[i].second);
    resumed->set_step_count(opt->step_count());
    resumed->scatter_state();
    run.set_grads(4);
    restarted.set_grads(4);
    opt->step(run.registry, c.lr);
    resumed->step(restarted.registry, c.lr);
    const Tensor &a = run.registry.flat_values(), &b = restarted.registry.flat_values();
    CHECK(std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0);
  }
}

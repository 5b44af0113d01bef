// The Trainer's step() on its own: what it returns for a normal step, a step whose gradient is not
// finite (diverged, nothing touched), an overflow under loss scaling (skipped, nothing touched, the
// scale backs off); that it is deterministic; and that snapshot + restore continue bit for bit.
#include <cmath>
#include <cstring>
#include <memory>

#include "app/model.hpp"
#include "app/objective.hpp"
#include "app/trainer.hpp"
#include "mpi_session.hpp"
#include "nn/network_factory.hpp"
#include "parallel/gradient_reducer.hpp"
#include "testing.hpp"

using namespace pdegen;
using namespace pdegen::app;

namespace {

const Communicator& world() {
  static const Communicator comm(testing::mpi_world());
  return comm;
}

Deck small_deck(const std::vector<std::string>& overrides = {}) {
  std::vector<std::string> all{"problem.pde=poisson2d",    "problem.resolution=16", "network.depth=2",
                               "network.base_channels=16", "training.batch_size=4", "training.steps=10"};
  all.insert(all.end(), overrides.begin(), overrides.end());
  return parse_deck("output:\n  dir: unused\n", "trainer test", all);
}

// An objective whose gradient is NaN at one element: a diverging run in miniature.
class NanGradient final : public Objective {
 public:
  explicit NanGradient(Objective& inner) : inner_(inner) {}
  void inputs(uint64_t seed, const std::vector<uint64_t>& idx, Tensor& input) override {
    inner_.inputs(seed, idx, input);
  }
  double loss(const Tensor& output, const Tensor& input, double scale, Tensor& d_output) override {
    const double value = inner_.loss(output, input, scale, d_output);
    d_output.data<float>()[d_output.numel() / 2] = NAN;
    return value;
  }

 private:
  Objective& inner_;
};

// Everything a Trainer needs, for one deck.
struct Setup {
  Deck deck;
  NetworkPlan plan;
  std::unique_ptr<Problem> problem;
  std::unique_ptr<Model> model;
  std::unique_ptr<GradientReducer> reducer;
  std::unique_ptr<PhysicsObjective> physics;

  explicit Setup(const Deck& d) : deck(d), plan(plan_network(d)) {
    problem = make_problem(deck.problem, deck.evaluation);
    model = build_model(plan, deck.training.seed);
    reducer = make_reducer(model->registry, world(), deck.parallel);
    physics = std::make_unique<PhysicsObjective>(*problem);
  }
  std::vector<float> values() const {
    const Tensor& v = model->registry.flat_values();
    return std::vector<float>(v.data<float>(), v.data<float>() + v.numel());
  }
};

}  // namespace

TEST_CASE("a normal step updates the parameters and reports its loss, gradient norm and learning rate") {
  Setup s(small_deck());
  Trainer trainer(s.deck, *s.model, *s.physics, *s.reducer, world(), nullptr);
  const std::vector<float> before = s.values();
  const StepOutcome o = trainer.step(0);
  CHECK(o.status == StepOutcome::Status::updated);
  CHECK(std::isfinite(o.loss));
  CHECK(o.grad_norm > 0);
  CHECK(o.lr == doctest::Approx(s.deck.optimizer.lr));
  CHECK(o.evaluations == 1);
  CHECK(s.values() != before);
  CHECK(trainer.optimizer().step_count() == 1);
}

TEST_CASE("a step whose gradient is not finite is reported as diverged and changes nothing") {
  Setup s(small_deck());
  NanGradient bad(*s.physics);
  Trainer trainer(s.deck, *s.model, bad, *s.reducer, world(), nullptr);
  const std::vector<float> before = s.values();
  const StepOutcome o = trainer.step(0);
  CHECK(o.status == StepOutcome::Status::diverged);
  CHECK(std::isfinite(o.loss));  // the loss alone would not have caught it
  CHECK(s.values() == before);
  CHECK(trainer.optimizer().step_count() == 0);
}

TEST_CASE("an overflow under loss scaling is a skipped step: nothing changes and the scale backs off") {
  Setup s(small_deck(
      {"loss_scaling.enabled=true", "loss_scaling.max_scale=1e46", "loss_scaling.initial_scale=1e45"}));
  Trainer trainer(s.deck, *s.model, *s.physics, *s.reducer, world(), nullptr);
  REQUIRE(trainer.scaler() != nullptr);
  const std::vector<float> before = s.values();
  const StepOutcome o = trainer.step(0);
  CHECK(o.status == StepOutcome::Status::skipped);
  CHECK(o.loss_scale == 1e45);
  CHECK(trainer.scaler()->scale() == 0.5e45);
  CHECK(s.values() == before);
  CHECK(trainer.optimizer().step_count() == 0);
}

TEST_CASE("two trainers on the same deck take bitwise the same steps") {
  Setup a(small_deck()), b(small_deck());
  Trainer ta(a.deck, *a.model, *a.physics, *a.reducer, world(), nullptr);
  Trainer tb(b.deck, *b.model, *b.physics, *b.reducer, world(), nullptr);
  for (int64_t s = 0; s < 3; ++s) CHECK(ta.step(s).loss == tb.step(s).loss);
  CHECK(a.values() == b.values());
}

TEST_CASE("snapshot after two steps and restore into a fresh trainer continue bit for bit") {
  Setup a(small_deck()), b(small_deck());
  Trainer ta(a.deck, *a.model, *a.physics, *a.reducer, world(), nullptr);
  ta.step(0);
  ta.step(1);
  const CheckpointData data = ta.snapshot(2, 0.5, "deck");
  Trainer tb(b.deck, *b.model, *b.physics, *b.reducer, world(), nullptr);
  CHECK(tb.restore(data, "memory") == 2);
  CHECK(a.values() == b.values());
  const StepOutcome oa = ta.step(2), ob = tb.step(2);
  CHECK(oa.loss == ob.loss);
  CHECK(a.values() == b.values());
}

// The visits of each multigrid cycle, and the deck of a level: its grid, steps, batch and learning
// rate, the rest of the deck unchanged.
#include "app/multigrid_schedule.hpp"
#include "testing.hpp"

using namespace pdegen;
using namespace pdegen::app;

namespace {

// The visits written as the classic multigrid pictures: fine to coarse from the top level down.
std::vector<int> visits(CycleKind cycle, int levels) { return cycle_visits(cycle, levels); }

Deck multigrid_deck(const std::string& extra) {
  return parse_deck(
      "problem: {pde: poisson2d, resolution: 64}\n"
      "training: {steps: 100, batch_size: 8}\n"
      "optimizer: {lr: 0.002}\n" +
          extra,
      "test.yaml");
}

}  // namespace

TEST_CASE("every cycle visits its levels in the multigrid order and ends at the finest") {
  CHECK(visits(CycleKind::half_v, 1) == std::vector<int>{0});
  CHECK(visits(CycleKind::half_v, 3) == std::vector<int>{0, 1, 2});
  CHECK(visits(CycleKind::v, 3) == std::vector<int>{2, 1, 0, 1, 2});
  CHECK(visits(CycleKind::w, 2) == std::vector<int>{1, 0, 1});
  CHECK(visits(CycleKind::w, 3) == std::vector<int>{2, 1, 0, 1, 0, 1, 2});
  CHECK(visits(CycleKind::w, 4) == std::vector<int>{3, 2, 1, 0, 1, 0, 1, 2, 1, 0, 1, 0, 1, 2, 3});
  CHECK(visits(CycleKind::f, 3) == std::vector<int>{2, 1, 0, 1, 0, 1, 2});
  CHECK(visits(CycleKind::f, 4) == std::vector<int>{3, 2, 1, 0, 1, 0, 1, 2, 1, 0, 1, 2, 3});
  for (CycleKind c : {CycleKind::half_v, CycleKind::v, CycleKind::w, CycleKind::f})
    for (int levels = 1; levels <= 5; ++levels) {
      const std::vector<int> v = visits(c, levels);
      CHECK(v.back() == levels - 1);
      for (size_t k = 1; k < v.size(); ++k) CHECK(std::abs(v[k] - v[k - 1]) == 1);  // one level at a time
    }
}

TEST_CASE("a level's deck takes the level's grid, steps, batch and learning rate") {
  const Deck d = multigrid_deck("multigrid: {levels: 3, level0: {steps: 30, batch_size: 32, lr: 0.01}}\n");
  REQUIRE(d.multigrid.level.size() == 3);
  CHECK(d.multigrid.level[0].resolution == 16);
  CHECK(d.multigrid.level[1].resolution == 32);
  CHECK(d.multigrid.level[2].resolution == 64);
  const Deck coarse = level_deck(d, 0);
  CHECK(coarse.problem.resolution == 16);
  CHECK(coarse.training.steps == 30);
  CHECK(coarse.training.batch_size == 32);
  CHECK(coarse.optimizer.lr == 0.01);
  CHECK(!coarse.multigrid.enabled());
  const Deck middle = level_deck(d, 1);  // the deck's own settings
  CHECK(middle.training.steps == 100);
  CHECK(middle.training.batch_size == 8);
  CHECK(middle.optimizer.lr == 0.002);
  CHECK(total_steps(d) == 230);
  CHECK(level_deck(multigrid_deck(""), 0) == multigrid_deck(""));
  // The resolved deck reads back as the same deck.
  CHECK(parse_deck(to_yaml(d), "resolved.yaml") == d);
}

TEST_CASE("burgers1d's time nodes scale with the level's grid") {
  const Deck d = parse_deck(
      "problem: {pde: burgers1d, resolution: 128, time_resolution: 64}\nmultigrid: {levels: 2}\n", "b.yaml");
  const Deck coarse = level_deck(d, 0);
  CHECK(coarse.problem.resolution == 64);
  CHECK(coarse.problem.burgers.time_resolution == 32);
}

TEST_CASE("the evaluation runs at evaluation.resolution, else at the level's grid") {
  const Deck d = multigrid_deck("multigrid: {levels: 2}\n");
  CHECK(evaluation_resolution(d, level_deck(d, 0)) == 32);
  const Deck fixed = multigrid_deck("multigrid: {levels: 2}\nevaluation: {resolution: 128}\n");
  CHECK(evaluation_resolution(fixed, level_deck(fixed, 0)) == 128);
}

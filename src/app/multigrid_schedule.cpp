// The visits of a multigrid cycle and the deck of each level (see multigrid_schedule.hpp).
#include "app/multigrid_schedule.hpp"

#include <cmath>

#include "core/error.hpp"

namespace pdegen::app {

namespace {

// Appends `levels` to `out`, leaving out a level equal to the one before it (one visit, not two).
void append_merged(std::vector<int>& out, const std::vector<int>& levels) {
  for (int l : levels)
    if (out.empty() || out.back() != l) out.push_back(l);
}

std::vector<int> v_cycle(int top) {
  std::vector<int> out;
  for (int l = top; l >= 0; --l) out.push_back(l);
  for (int l = 1; l <= top; ++l) out.push_back(l);
  return out;
}

std::vector<int> w_cycle(int top) {
  if (top == 0) return {0};
  std::vector<int> out{top};
  const std::vector<int> inner = w_cycle(top - 1);
  append_merged(out, inner);
  append_merged(out, inner);
  append_merged(out, {top});
  return out;
}

std::vector<int> f_cycle(int top) {
  if (top == 0) return {0};
  std::vector<int> out{top};
  append_merged(out, f_cycle(top - 1));
  append_merged(out, v_cycle(top - 1));
  append_merged(out, {top});
  return out;
}

}  // namespace

std::vector<int> cycle_visits(CycleKind cycle, int levels) {
  PDEGEN_CHECK(levels >= 1, "a cycle needs at least one level, got {}", levels);
  const int top = levels - 1;
  switch (cycle) {
    case CycleKind::half_v: {
      std::vector<int> out;
      for (int l = 0; l <= top; ++l) out.push_back(l);
      return out;
    }
    case CycleKind::v:
      return v_cycle(top);
    case CycleKind::w:
      return w_cycle(top);
    case CycleKind::f:
      return f_cycle(top);
  }
  PDEGEN_THROW("unhandled cycle {}", static_cast<int>(cycle));
}

std::vector<int> visits_of(const Deck& deck) {
  return deck.multigrid.enabled() ? cycle_visits(deck.multigrid.cycle, deck.multigrid.levels)
                                  : std::vector<int>{0};
}

ProblemConfig at_resolution(const ProblemConfig& problem, int resolution) {
  ProblemConfig p = problem;
  if (problem.pde == PdeKind::burgers1d && problem.burgers.time_resolution > 0)
    p.burgers.time_resolution = static_cast<int>(
        std::lround(static_cast<double>(problem.burgers.time_resolution) * resolution / problem.resolution));
  p.resolution = resolution;
  return p;
}

Deck level_deck(const Deck& deck, int level) {
  if (!deck.multigrid.enabled()) return deck;
  const MultigridLevel& l = deck.multigrid.level.at(static_cast<size_t>(level));
  Deck d = deck;
  d.problem = at_resolution(deck.problem, l.resolution);
  d.training.steps = l.steps;
  d.training.batch_size = l.batch_size;
  if (l.lr > 0) d.optimizer.lr = l.lr;
  for (int shallower = deck.multigrid.levels - 1 - level; deck.multigrid.deepen && shallower > 0;
       --shallower) {
    d.network.depth -= 1;
    d.network.base_channels *= d.network.channel_multiplier;
  }
  d.multigrid = MultigridConfig{};
  return d;
}

int evaluation_resolution(const Deck& deck, const Deck& level_deck) {
  return deck.evaluation.resolution > 0 ? deck.evaluation.resolution : level_deck.problem.resolution;
}

int64_t total_steps(const Deck& deck) {
  if (!deck.multigrid.enabled()) return deck.training.steps;
  int64_t total = 0;
  for (int l : visits_of(deck)) total += deck.multigrid.level[static_cast<size_t>(l)].steps;
  return total;
}

}  // namespace pdegen::app

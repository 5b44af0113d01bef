// What a multigrid training run visits: the levels of its cycle in order, and the deck each visit
// trains with. A run without multigrid is one visit of the deck itself.
#pragma once

#include <vector>

#include "config/deck.hpp"

namespace pdegen::app {

// The levels visited, in order (0 = the coarsest, levels - 1 the finest, where every cycle ends).
//   half_v: 0, 1, ..., L-1
//   v:      L-1, ..., 1, 0, 1, ..., L-1
//   w:      W(l) = l, W(l-1), W(l-1), l with repeats merged (L = 3: 2 1 0 1 0 1 2)
//   f:      F(l) = l, F(l-1), V(l-1), l with repeats merged (L = 4: 3 2 1 0 1 0 1 2 1 0 1 2 3)
std::vector<int> cycle_visits(CycleKind cycle, int levels);

// The visits of `deck` (one, level 0, without multigrid).
std::vector<int> visits_of(const Deck& deck);

// `problem` on a grid of `resolution` nodes per axis; burgers1d's time nodes scale with it.
ProblemConfig at_resolution(const ProblemConfig& problem, int resolution);

// The deck that trains level `level` of `deck`: the level's resolution, steps, batch and learning
// rate in place of the problem's, training's and optimizer's; `deck` itself without multigrid.
Deck level_deck(const Deck& deck, int level);

// The resolution the evaluation runs at while `level_deck` trains.
int evaluation_resolution(const Deck& deck, const Deck& level_deck);

// Optimizer steps of all visits, when none ends early.
int64_t total_steps(const Deck& deck);

}  // namespace pdegen::app

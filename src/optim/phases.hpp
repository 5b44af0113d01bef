// Optimizer switching by schedule (the deck's optimizer.then chain, e.g. Adam for N steps, then
// L-BFGS): which optimizer runs at a training step, over which steps its phase runs, and its
// learning rate there. Each phase's schedule runs over its own steps.
//
// In the trainer:
//   OptimizerPhaseSpan phase = optimizer_phase(deck.optimizer, s, steps);
//   if (!optimizer || phase.index != current) {   // at start, restart, and each switch
//     optimizer = make_optimizer(*phase.settings, registry, comm);  current = phase.index;
//   }
//   const double lr = phase_learning_rate(phase, s);
// A checkpoint holds the state of the phase of its step; restore it into the optimizer made for
// the phase of the restart step (the names differ between optimizer types).
#pragma once

#include <cstdint>

#include "config/deck.hpp"

namespace pdegen {

struct OptimizerPhaseSpan {
  int index = 0;                                // 0: the optimizer section itself, k: its k-th `then`
  const OptimizerSettings* settings = nullptr;  // points into the OptimizerConfig
  int64_t begin = 0, end = 0;                   // training steps [begin, end) of this phase
};

// The phase that runs training step `step` (0-based) of a run of `total_steps` steps.
OptimizerPhaseSpan optimizer_phase(const OptimizerConfig& config, int64_t step, int64_t total_steps);

// The learning rate of training step `step` inside `phase`: the phase's schedule at step - begin of
// a run of end - begin steps.
double phase_learning_rate(const OptimizerPhaseSpan& phase, int64_t step);

}  // namespace pdegen

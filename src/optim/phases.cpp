// Optimizer phases (see phases.hpp).
#include "optim/phases.hpp"

#include <algorithm>

#include "core/error.hpp"
#include "optim/schedule.hpp"

namespace pdegen {

OptimizerPhaseSpan optimizer_phase(const OptimizerConfig& config, int64_t step, int64_t total_steps) {
  PDEGEN_CHECK(step >= 0, "optimizer phase of step {}", step);
  OptimizerPhaseSpan span{0, &config, 0, total_steps};
  for (size_t k = 0; k < config.phases.size(); ++k) {
    const OptimizerPhase& phase = config.phases[k];
    PDEGEN_CHECK(phase.after_steps > span.begin, "optimizer phases out of order: {} after {}",
                 phase.after_steps, span.begin);
    if (step < phase.after_steps) {
      span.end = std::min(total_steps, phase.after_steps);
      break;
    }
    span = {static_cast<int>(k + 1), &phase.settings, phase.after_steps, total_steps};
  }
  span.end = std::max(span.end, span.begin);
  return span;
}

double phase_learning_rate(const OptimizerPhaseSpan& phase, int64_t step) {
  PDEGEN_CHECK(phase.settings && step >= phase.begin, "learning rate of step {} in a phase from step {}",
               step, phase.begin);
  return learning_rate(*phase.settings, step - phase.begin,
                       std::max<int64_t>(phase.end - phase.begin, step - phase.begin + 1));
}

}  // namespace pdegen

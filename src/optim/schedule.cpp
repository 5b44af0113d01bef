// Learning-rate schedules (see schedule.hpp).
#include "optim/schedule.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.hpp"

namespace pdegen {

double learning_rate(const OptimizerSettings& config, int64_t step, int64_t total_steps) {
  PDEGEN_CHECK(step >= 0, "learning rate of step {}", step);
  const ScheduleConfig& s = config.schedule;
  const double lr = config.lr;
  const int64_t warmup = s.warmup_steps;
  if (step < warmup) return lr * static_cast<double>(step + 1) / static_cast<double>(warmup);
  const int64_t after = step - warmup;
  switch (s.type) {
    case ScheduleKind::constant:
      return lr;
    case ScheduleKind::step:
      PDEGEN_CHECK(s.step_size >= 1, "step schedule with step_size {}", s.step_size);
      return lr * std::pow(s.gamma, static_cast<double>(after / s.step_size));
    case ScheduleKind::cosine: {
      // Steps after the warm-up run from 0 to span; a run with one step or none after the warm-up
      // is all "last step".
      const int64_t span = total_steps - 1 - warmup;
      const double progress =
          span > 0 ? std::min(1.0, static_cast<double>(after) / static_cast<double>(span)) : 1.0;
      return s.min_lr + (lr - s.min_lr) * 0.5 * (1 + std::cos(std::numbers::pi * progress));
    }
  }
  return lr;
}

}  // namespace pdegen

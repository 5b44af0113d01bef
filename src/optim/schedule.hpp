// Learning-rate schedules (the deck's optimizer.schedule): a linear warm-up, then constant, step
// decay or cosine decay.
#pragma once

#include <cstdint>

#include "config/deck.hpp"

namespace pdegen {

// The learning rate of update `step` (0-based: the first optimizer step is 0) of a run of
// `total_steps` updates, with base rate lr = config.lr and W = config.schedule.warmup_steps:
//   warm-up, step < W:  lr * (step + 1) / W       (rises linearly from 0; the last warm-up step has lr)
//   after, with s = step - W counted from the end of the warm-up:
//     constant:  lr
//     step:      lr * gamma^floor(s / step_size)
//     cosine:    min_lr + (lr - min_lr) (1 + cos(pi s / (total_steps - 1 - W))) / 2, which is lr at
//                s = 0 and min_lr at the last step (min_lr from there on if the run goes longer).
double learning_rate(const OptimizerSettings& config, int64_t step, int64_t total_steps);

}  // namespace pdegen

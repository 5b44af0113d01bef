// What one process needs for a training step against what the machine has, for `pdegen check`: a
// deck that cannot fit is caught before a job waits in a queue and then dies of std::bad_alloc.
#pragma once

#include <cstdint>

#include "config/deck.hpp"
#include "nn/network_plan.hpp"

namespace pdegen::app {

struct MemoryEstimate {
  double per_sample = 0;  // activations of one sample at the peak of a step (the plan's, / batch)
  int64_t samples = 1;    // samples of one pass on one process: the batch over micro_batches
  double state = 0;       // parameters, gradients and optimizer state, fp32
  double sampler = 0;     // the KL sampler's tables of 1D modes (poisson)
  double fixed() const { return state + sampler; }
  double total() const { return per_sample * static_cast<double>(samples) + fixed(); }
};
MemoryEstimate estimate_memory(const Deck& deck, const NetworkPlan& plan);

// The fewest ranks, each with `available` bytes, over which the batch splits so that one rank's
// share fits; 0 when even one sample per rank does not fit.
int64_t ranks_to_fit(const MemoryEstimate& estimate, double available);

// Physical memory, or the cgroup's limit when that is smaller (a container or batch job's share).
double machine_memory_bytes();

}  // namespace pdegen::app

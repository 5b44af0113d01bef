// The memory estimate of `pdegen check` (see memory_estimate.hpp).
#include "app/memory_estimate.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>

namespace pdegen::app {

namespace {

// fp32 copies of the parameters an optimizer keeps besides values and gradients.
int state_copies(const OptimizerSettings& o) {
  switch (o.type) {
    case OptimizerKind::adam:
    case OptimizerKind::adamw:
    case OptimizerKind::lamb:
      return 2;  // first and second moments
    case OptimizerKind::sgd:
    case OptimizerKind::lars:
      return o.momentum.momentum > 0 ? 1 : 0;
    case OptimizerKind::lbfgs:
      return 2 * o.lbfgs.history + 3;  // (s, y) pairs, previous gradient, direction, line-search start
  }
  return 2;
}

// A later phase's optimizer replaces the one before, so the largest one counts.
int most_state_copies(const OptimizerConfig& o) {
  int copies = state_copies(o);
  for (const OptimizerPhase& phase : o.phases) copies = std::max(copies, state_copies(phase.settings));
  return copies;
}

// The number in a cgroup limit file; infinity for "max", a missing file or anything unreadable.
double limit_in(const std::string& path) {
  std::ifstream in(path);
  double value = 0;
  if (in >> value && value > 0) return value;
  return INFINITY;
}

// This process's cgroup as named in /proc/self/cgroup: `v1_controller`'s ("4:memory:/job") or,
// for "" the unified (v2) one ("0::/job"); "" when not listed.
std::string own_cgroup(const std::string& v1_controller) {
  std::ifstream in("/proc/self/cgroup");
  const std::string tag = v1_controller.empty() ? "0::" : ":" + v1_controller + ":";
  for (std::string line; std::getline(in, line);) {
    const size_t at = line.find(tag);
    if (at != std::string::npos && (!v1_controller.empty() || at == 0)) return line.substr(at + tag.size());
  }
  return "";
}

}  // namespace

MemoryEstimate estimate_memory(const Deck& deck, const NetworkPlan& plan) {
  MemoryEstimate e;
  e.per_sample = static_cast<double>(plan.peak_activation_bytes) / static_cast<double>(plan.global_batch);
  e.samples = (deck.training.batch_size + deck.training.micro_batches - 1) / deck.training.micro_batches;
  e.state = 4.0 * static_cast<double>(plan.parameters) * (2 + most_state_copies(deck.optimizer));
  if (deck.problem.is_poisson())
    e.sampler = 8.0 * deck.problem.poisson.kl_modes * deck.problem.resolution * deck.problem.spatial_dims();
  return e;
}

int64_t ranks_to_fit(const MemoryEstimate& e, double available) {
  // With P ranks a rank holds ceil(samples / P) samples; k of them fit.
  const double k = std::floor((available - e.fixed()) / e.per_sample);
  if (k < 1) return 0;
  if (k >= static_cast<double>(e.samples)) return 1;
  const auto fit = static_cast<int64_t>(k);
  return (e.samples + fit - 1) / fit;
}

double machine_memory_bytes() {
  double bytes = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE));
  // The limit of the own cgroup and of the namespace's root, which is the own one in a container.
  for (const std::string& dir : {own_cgroup(""), std::string()})
    bytes = std::min(bytes, limit_in("/sys/fs/cgroup" + dir + "/memory.max"));
  for (const std::string& dir : {own_cgroup("memory"), std::string()})  // cgroup v1
    bytes = std::min(bytes, limit_in("/sys/fs/cgroup/memory" + dir + "/memory.limit_in_bytes"));
  return bytes;
}

}  // namespace pdegen::app

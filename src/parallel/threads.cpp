// Threads per rank: the arithmetic (pure, unit-tested) and its application over MPI.
#include "parallel/threads.hpp"

#include <fmt/format.h>
#include <mpi.h>
#include <omp.h>
#include <sched.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>

#include "core/error.hpp"
#include "parallel/communicator.hpp"

namespace pdegen {

namespace {

bool overlap(const CpuMask& a, const CpuMask& b) { return (a & b).any(); }

// This process's affinity mask; all the CPUs OpenMP sees if the kernel will not say.
CpuMask own_mask() {
  cpu_set_t set;
  CPU_ZERO(&set);
  CpuMask mask;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    for (size_t cpu = 0; cpu < mask.size(); ++cpu)
      if (CPU_ISSET(cpu, &set)) mask.set(cpu);
  }
  if (mask.none())
    for (int cpu = 0; cpu < std::min<int>(omp_get_num_procs(), static_cast<int>(mask.size())); ++cpu)
      mask.set(static_cast<size_t>(cpu));
  return mask;
}

// OMP_NUM_THREADS as the OpenMP runtime read it (its first entry when it is a list); 0 if unset.
int requested_threads() {
  const char* env = std::getenv("OMP_NUM_THREADS");
  return env && *env ? omp_get_max_threads() : 0;
}

// A mask as words, for MPI, and back.
constexpr size_t mask_words = CpuMask().size() / 64;
std::array<uint64_t, mask_words + 1> pack(const RankCpus& r) {
  std::array<uint64_t, mask_words + 1> words{};
  for (size_t cpu = 0; cpu < r.mask.size(); ++cpu)
    if (r.mask.test(cpu)) words[cpu / 64] |= uint64_t{1} << (cpu % 64);
  words[mask_words] = static_cast<uint64_t>(r.requested_threads);
  return words;
}
RankCpus unpack(const uint64_t* words) {
  RankCpus r;
  for (size_t cpu = 0; cpu < r.mask.size(); ++cpu)
    if ((words[cpu / 64] >> (cpu % 64)) & 1) r.mask.set(cpu);
  r.requested_threads = static_cast<int>(words[mask_words]);
  return r;
}

// The default of one rank, ignoring OMP_NUM_THREADS: its CPUs over the ranks that share them.
int default_threads(const std::vector<RankCpus>& node, size_t index) {
  const CpuMask& mine = node[index].mask;
  const auto sharing =
      std::count_if(node.begin(), node.end(), [&](const RankCpus& r) { return overlap(r.mask, mine); });
  return std::max(1, static_cast<int>(mine.count()) / static_cast<int>(std::max<std::ptrdiff_t>(1, sharing)));
}

int threads_of(const std::vector<RankCpus>& node, size_t index) {
  const int requested = node[index].requested_threads;
  return requested > 0 ? requested : default_threads(node, index);
}

}  // namespace

ThreadChoice choose_threads(const std::vector<RankCpus>& node, int index) {
  PDEGEN_CHECK(index >= 0 && static_cast<size_t>(index) < node.size(), "rank {} is not among the node's {}",
               index, node.size());
  const size_t me = static_cast<size_t>(index);
  const CpuMask& mine = node[me].mask;
  ThreadChoice c;
  c.threads = threads_of(node, me);
  c.from_environment = node[me].requested_threads > 0;
  c.cpus = static_cast<int>(mine.count());
  c.sharing_ranks = 0;
  c.shared_threads = 0;
  CpuMask shared;
  for (size_t r = 0; r < node.size(); ++r) {
    if (!overlap(node[r].mask, mine)) continue;
    ++c.sharing_ranks;
    c.shared_threads += threads_of(node, r);
    shared |= node[r].mask;
    if (r < me) c.first_sharing = false;
  }
  c.shared_cpus = static_cast<int>(shared.count());
  return c;
}

std::string describe(const ThreadChoice& c) {
  if (c.from_environment) return fmt::format("threads: {} per rank (OMP_NUM_THREADS)", c.threads);
  return fmt::format(
      "threads: {} per rank ({} CPU{} available to this rank, shared by {} rank{} on this node; set "
      "OMP_NUM_THREADS to override)",
      c.threads, c.cpus, c.cpus == 1 ? "" : "s", c.sharing_ranks, c.sharing_ranks == 1 ? "" : "s");
}

std::string oversubscription_warning(const ThreadChoice& c) {
  const int fitting = std::max(1, c.shared_cpus / std::max(1, c.sharing_ranks));
  const std::string fix =
      c.sharing_ranks > c.shared_cpus
          ? fmt::format("run at most {} rank{} on these CPUs", c.shared_cpus, c.shared_cpus == 1 ? "" : "s")
          : fmt::format("unset OMP_NUM_THREADS (pdegen then picks {0} per rank) or set it to {0}", fitting);
  return fmt::format(
      "threads: oversubscribed{}: {} rank{} run {} OpenMP threads on {} CPU{}. OpenMP barriers then wait "
      "for descheduled threads and training typically runs several times slower (2 ranks x 2 "
      "threads on 2 cores trained 12x slower than 2 x 1). To fix: {}, or bind the ranks to disjoint cores",
      c.from_environment ? fmt::format(" by OMP_NUM_THREADS={}", c.threads) : "", c.sharing_ranks,
      c.sharing_ranks == 1 ? "" : "s", c.shared_threads, c.shared_cpus, c.shared_cpus == 1 ? "" : "s", fix);
}

ThreadChoice set_threads_per_rank(const Communicator& world) {
  const Communicator node = world.node_local();
  const auto mine = pack(RankCpus{own_mask(), requested_threads()});
  std::vector<uint64_t> all(mine.size() * static_cast<size_t>(node.size()));
  MPI_CHECK(MPI_Allgather(mine.data(), static_cast<int>(mine.size()), MPI_UINT64_T, all.data(),
                          static_cast<int>(mine.size()), MPI_UINT64_T, node.comm()));
  std::vector<RankCpus> ranks;
  for (size_t r = 0; r < static_cast<size_t>(node.size()); ++r)
    ranks.push_back(unpack(&all[r * mine.size()]));
  const ThreadChoice choice = choose_threads(ranks, node.rank());
  if (!choice.from_environment) omp_set_num_threads(choice.threads);
  spdlog::info("{}", describe(choice));
  if (choice.oversubscribed() && choice.first_sharing) spdlog::warn("{}", oversubscription_warning(choice));
  return choice;
}

}  // namespace pdegen

// OpenMP threads per rank. Without OMP_NUM_THREADS every rank would start one thread per CPU of
// the node, so R ranks on C cores run R x C threads: oneDNN and the OpenMP loops then wait at
// barriers on descheduled threads (a 2-rank run on 2 cores trained 17x slower). The default here
// splits the CPUs a rank may run on among the ranks of its node that share them.
#pragma once

#include <bitset>
#include <string>
#include <vector>

namespace pdegen {

class Communicator;

// The CPUs a process may run on (its affinity mask); 1024 = glibc's CPU_SETSIZE.
using CpuMask = std::bitset<1024>;

// What one rank of a node sees: its mask and the OMP_NUM_THREADS it was given (0: not set).
struct RankCpus {
  CpuMask mask;
  int requested_threads = 0;
};

struct ThreadChoice {
  int threads = 1;                // OpenMP threads for this rank
  bool from_environment = false;  // OMP_NUM_THREADS decided it
  int cpus = 1;                   // CPUs in this rank's mask
  int sharing_ranks = 1;          // ranks of the node whose masks overlap this one's, itself included
  int shared_cpus = 1;            // CPUs in the union of those masks
  int shared_threads = 1;         // threads of those ranks together
  bool first_sharing = true;      // no lower rank shares these CPUs: this one speaks for them
  bool oversubscribed() const { return shared_threads > shared_cpus; }
};

// The choice of rank `index` among the ranks of one node: OMP_NUM_THREADS when it was set, else
// its CPUs divided by the ranks sharing them, at least 1. Ranks bound to disjoint CPUs keep their
// whole mask. Pure, so every rank computes every other rank's count from the same gathered data.
ThreadChoice choose_threads(const std::vector<RankCpus>& node, int index);

// The info line ("threads: 1 per rank (...)") and, when oversubscribed, the warning's text.
std::string describe(const ThreadChoice& choice);
std::string oversubscription_warning(const ThreadChoice& choice);

// Gathers every rank's mask over the node-local communicator of `world`, applies this rank's
// choice with omp_set_num_threads (before any oneDNN primitive exists, which reads it when
// created), logs it, and warns once per group of ranks that oversubscribe their CPUs. Collective.
ThreadChoice set_threads_per_rank(const Communicator& world);

}  // namespace pdegen

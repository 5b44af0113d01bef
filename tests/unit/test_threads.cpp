// Threads per rank: the CPUs of a rank split among the ranks of its node that share them,
// OMP_NUM_THREADS kept, and oversubscription recognised.
#include <initializer_list>
#include <string>
#include <vector>

#include "core/denormals.hpp"
#include "parallel/threads.hpp"
#include "testing.hpp"

using namespace pdegen;

namespace {

// A rank bound to CPUs [first, first + count), with OMP_NUM_THREADS = requested (0: unset).
RankCpus bound(int first, int count, int requested = 0) {
  RankCpus r;
  for (int cpu = first; cpu < first + count; ++cpu) r.mask.set(static_cast<size_t>(cpu));
  r.requested_threads = requested;
  return r;
}

// `ranks` ranks, none bound, on a node of `cpus` CPUs.
std::vector<RankCpus> unbound(int ranks, int cpus, int requested = 0) {
  return std::vector<RankCpus>(static_cast<size_t>(ranks), bound(0, cpus, requested));
}

}  // namespace

TEST_CASE("ranks sharing all CPUs split them: 2 ranks on 2 CPUs run 1 thread each") {
  for (int index : {0, 1}) {
    const ThreadChoice c = choose_threads(unbound(2, 2), index);
    CHECK(c.threads == 1);
    CHECK_FALSE(c.from_environment);
    CHECK(c.cpus == 2);
    CHECK(c.sharing_ranks == 2);
    CHECK_FALSE(c.oversubscribed());
  }
  CHECK(choose_threads(unbound(3, 16), 2).threads == 5);  // rounded down, never more than the CPUs
  CHECK(choose_threads(unbound(1, 8), 0).threads == 8);
}

TEST_CASE("ranks bound to disjoint cores keep their whole mask") {
  const std::vector<RankCpus> node = {bound(0, 8), bound(8, 8)};
  for (int index : {0, 1}) {
    const ThreadChoice c = choose_threads(node, index);
    CHECK(c.threads == 8);
    CHECK(c.sharing_ranks == 1);
    CHECK(c.first_sharing);
    CHECK_FALSE(c.oversubscribed());
  }
}

TEST_CASE("overlapping masks count only the ranks that overlap") {
  // Rank 0 on CPUs 0-7 meets rank 1 on 4-5; rank 2 on 8-11 is alone.
  const std::vector<RankCpus> node = {bound(0, 8), bound(4, 2), bound(8, 4)};
  const ThreadChoice c0 = choose_threads(node, 0), c1 = choose_threads(node, 1), c2 = choose_threads(node, 2);
  CHECK(c0.threads == 4);
  CHECK(c0.sharing_ranks == 2);
  CHECK(c1.threads == 1);
  CHECK(c1.shared_cpus == 8);
  CHECK(c1.shared_threads == 5);
  CHECK_FALSE(c1.first_sharing);  // rank 0 speaks for CPUs 0-7
  CHECK(c2.threads == 4);
  CHECK(c2.sharing_ranks == 1);
}

TEST_CASE("OMP_NUM_THREADS wins, and 2 ranks x 2 threads on 2 CPUs is oversubscribed") {
  const ThreadChoice c = choose_threads(unbound(2, 2, 2), 0);
  CHECK(c.threads == 2);
  CHECK(c.from_environment);
  CHECK(c.shared_threads == 4);
  CHECK(c.shared_cpus == 2);
  CHECK(c.oversubscribed());
  CHECK(describe(c) == "threads: 2 per rank (OMP_NUM_THREADS)");
  const std::string warning = oversubscription_warning(c);
  CHECK(warning.find("oversubscribed by OMP_NUM_THREADS=2: 2 ranks run 4 OpenMP threads on 2 CPUs") !=
        std::string::npos);
  CHECK(warning.find("set it to 1") != std::string::npos);

  const ThreadChoice fits = choose_threads(unbound(2, 2, 1), 1);
  CHECK(fits.threads == 1);
  CHECK_FALSE(fits.oversubscribed());
  CHECK(choose_threads(unbound(1, 2, 8), 0).threads == 8);  // more than the CPUs, as asked
}

TEST_CASE("more ranks than CPUs: 1 thread each, still oversubscribed") {
  const std::vector<RankCpus> node = unbound(4, 2);
  const ThreadChoice c = choose_threads(node, 3);
  CHECK(c.threads == 1);
  CHECK(c.shared_threads == 4);
  CHECK(c.oversubscribed());
  CHECK_FALSE(c.first_sharing);
  CHECK(choose_threads(node, 0).first_sharing);
  CHECK(oversubscription_warning(c).find("run at most 2 ranks on these CPUs") != std::string::npos);
  CHECK(describe(c) ==
        "threads: 1 per rank (2 CPUs available to this rank, shared by 4 ranks on this node; set "
        "OMP_NUM_THREADS to override)");
}

TEST_CASE("denormals flush to zero in the main thread and in every OpenMP thread") {
#if !defined(__SSE2__)
  return testing::skip_reason("no flush-to-zero mode on this CPU");
#endif
  flush_denormals_in_every_thread();
  volatile float tiny = 1e-30f;  // volatile: computed at run time, under the thread's MXCSR
  int denormal = 0;
#pragma omp parallel reduction(+ : denormal)
  {
    const float product = tiny * 1e-10f;  // 1e-40: a denormal unless flushed
    denormal += product != 0.0f;
  }
  CHECK(denormal == 0);
  CHECK(tiny * 1e-10f == 0.0f);
}

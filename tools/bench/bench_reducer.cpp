// Micro-benchmark of the gradient reducer alone (no network), under mpiexec.mpich -n P:
//   1. allreduce time and bus bandwidth against message size (what one bucket costs);
//   2. a simulated backward over a gradient buffer of --total-mb MiB: parameters of assorted
//      sizes become ready in backward order, each after "computing" for a time proportional to its
//      size (--compute-ms for the whole backward, spun on the CPU as real backward would), and the
//      reducer overlaps or not; step time, reduction time and exposed fraction against bucket size.
// Prints markdown tables (docs/parallel.md has the measurements and the command).
#include <fmt/format.h>
#include <mpi.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.hpp"
#include "core/timer.hpp"
#include "parallel/mpi_reducer.hpp"

using namespace pdegen;

namespace {

double arg(int argc, char** argv, const char* name, double fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return std::atof(argv[i + 1]);
  return fallback;
}

void spin_for(double seconds) {
  const Timer t;
  while (t.seconds() < seconds) {
  }
}

// Median over ranks' medians of `reps` timed calls of f (after one warm-up).
template <class F>
double timed(const Communicator& comm, int reps, F&& f) {
  f();
  std::vector<double> times;
  for (int r = 0; r < reps; ++r) {
    comm.barrier();
    const Timer t;
    f();
    times.push_back(t.seconds());
  }
  return comm.max(bench::median(times));
}

void allreduce_table(const Communicator& comm, int reps) {
  if (comm.rank() == 0)
    fmt::print(
        "\n### allreduce (MPI_Allreduce, fp32 sum, {} ranks)\n\n| message | time | bus bandwidth "
        "|\n|---|---|---|\n",
        comm.size());
  for (int64_t bytes = 4096; bytes <= (int64_t{64} << 20); bytes *= 4) {
    std::vector<float> buf(static_cast<size_t>(bytes / 4), 1.0f);
    const double t =
        timed(comm, reps, [&] { comm.allreduce_sum(buf.data(), static_cast<int64_t>(buf.size())); });
    // Bus bandwidth as NCCL reports it: 2 (P-1)/P bytes per byte of message.
    const double bus = 2.0 * (comm.size() - 1) / comm.size() * static_cast<double>(bytes) / t / 1e9;
    if (comm.rank() == 0)
      fmt::print("| {:>8} KiB | {:>9.3f} ms | {:>6.2f} GB/s |\n", bytes / 1024, 1e3 * t, bus);
  }
}

void reducer_table(const Communicator& comm, int reps, double total_mb, double compute_ms) {
  // Parameters of a U-Net-like mix: many small (biases, norms) and a few large (convolutions).
  ParameterRegistry reg;
  const int64_t total = static_cast<int64_t>(total_mb * 1024 * 1024 / 4);
  int64_t used = 0;
  for (int i = 0; used < total; ++i) {
    const int64_t n = std::min<int64_t>(total - used, i % 3 == 2 ? 32 : (int64_t{4096} << (i % 7)));
    reg.add(fmt::format("p{}", i), Shape{n}, ParamInit::constant_value(0));
    used += n;
  }
  reg.finalize(1);
  const auto order = reg.backward_order();
  const double per_element = compute_ms * 1e-3 / static_cast<double>(total);
  if (comm.rank() == 0)
    fmt::print(
        "\n### reducer, simulated backward of {:.0f} ms over {:.1f} MiB of gradients ({} parameters, {} "
        "ranks)\n\n| bucket_mb | buckets | overlap | step | reduction | exposed | exposed fraction |\n"
        "|---|---|---|---|---|---|---|\n",
        compute_ms, total_mb, order.size(), comm.size());
  for (double mb : {0.25, 1.0, 4.0, 25.0, 100.0}) {
    for (bool overlap : {false, true}) {
      ParallelConfig options;
      options.bucket_mb = mb;
      options.first_bucket_mb = std::min(1.0, mb);
      options.overlap = overlap;
      MpiReducer reducer(reg, comm, options);
      auto step = [&] {
        reducer.begin_backward(true);
        for (ParameterRegistry::Id id : order) {
          spin_for(per_element * static_cast<double>(reg.param(id).shape.numel()));
          reg.grad_ready(id);
        }
        reducer.finish();
      };
      const double t = timed(comm, reps, step);
      const ReducerStats& s = reducer.stats();
      const double steps = static_cast<double>(std::max<int64_t>(1, s.steps));
      const double comm_s = comm.max(s.comm_seconds / steps), exposed = comm.max(s.exposed_seconds / steps);
      if (comm.rank() == 0)
        fmt::print("| {:>6} | {:>3} | {:>3} | {:>8.2f} ms | {:>8.2f} ms | {:>8.2f} ms | {:.2f} |\n", mb,
                   reducer.schedule().buckets.size(), overlap ? "on" : "off", 1e3 * t, 1e3 * comm_s,
                   1e3 * exposed, s.exposed_fraction());
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  {
    const Communicator comm;
    const int reps = static_cast<int>(arg(argc, argv, "--reps", 10));
    if (comm.rank() == 0 && (argc > 1 && std::strcmp(argv[1], "--help") == 0))
      fmt::print("usage: mpiexec.mpich -n P bench_reducer [--reps N] [--total-mb MiB] [--compute-ms ms]\n");
    allreduce_table(comm, reps);
    reducer_table(comm, reps, arg(argc, argv, "--total-mb", 32), arg(argc, argv, "--compute-ms", 100));
  }
  MPI_Finalize();
  return 0;
}

// The gradient reducer over MPI, for host gradient buffers (design notes: docs/parallel.md).
//
// Gradients become ready in backward order, which is the layout order of the registry's flat
// gradient buffer; the static BucketSchedule cuts that buffer into contiguous buckets. Layers report
// each finished parameter gradient through the registry's grad_ready hook; when a bucket's last
// parameter is in, the bucket is ready. With overlap on, a communication thread launches ready
// buckets strictly in schedule order (so every rank issues the same collectives in the same order,
// with no coordinator) as non-blocking collectives on a private duplicate of the communicator, and
// completes them while backward goes on. finish() waits for the rest. With overlap off, finish()
// reduces every bucket in order on the calling thread: the blocking baseline.
//
// The reduction is a SUM (the loss is a sum over the global batch divided by its size; see
// trainer.cpp), in one of three forms per bucket:
//   flat:          one allreduce;
//   hierarchical:  reduce-scatter inside the node, allreduce of each rank's shard with the ranks of
//                  the same node-local rank on the other nodes, allgather inside the node;
//   compressed:    fp16/bf16 on the wire with fp32 accumulation: an all-to-all of 16-bit shards,
//                  each rank sums its shard in fp32 in rank order, an allgather of the 16-bit sums.
//                  (Hierarchical + compressed compresses the inter-node step.)
// Every form leaves bitwise the same gradient on every rank.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "config/deck.hpp"
#include "core/parameter.hpp"
#include "core/timeline.hpp"
#include "parallel/bucket_schedule.hpp"
#include "parallel/communicator.hpp"
#include "parallel/gradient_reducer.hpp"

namespace pdegen {

class MpiReducer final : public GradientReducer {
 public:
  // Builds and verifies the schedule (collective: every rank of `comm` must construct its MpiReducer
  // with the same network and options) and installs the registry's grad_ready hook. `timeline`
  // (optional) receives one event per bucket reduction.
  MpiReducer(ParameterRegistry& params, const Communicator& comm, const ParallelConfig& options,
             Timeline* timeline = nullptr);
  ~MpiReducer() override;
  MpiReducer(const MpiReducer&) = delete;
  MpiReducer& operator=(const MpiReducer&) = delete;

  // Before each backward of a step. Only the step's last micro-batch communicates; the earlier
  // ones only accumulate into the gradient buffer.
  void begin_backward(bool communicate) override;
  // After the step's last backward: returns when the whole gradient buffer holds the sum over
  // ranks. Buckets whose parameters never reported (a rank without samples in the last
  // micro-batch) are reduced here too, so every rank issues the same collectives.
  void finish() override;

  const BucketSchedule& schedule() const override { return schedule_; }
  const ReducerStats& stats() const override { return stats_; }
  bool hierarchical() const override { return hierarchical_; }
  std::string describe() const override;
  void allreduce_statistics(double* data, int count) override;

 private:
  struct Work;  // one bucket's reduction: its phases and buffers (mpi_reducer.cpp)

  void on_grad_ready(ParameterRegistry::Id id);
  void mark_ready(int bucket);
  void communication_loop();
  void complete(int bucket, double t0);

  ParameterRegistry& params_;
  Communicator comm_;          // private duplicate: the communication thread's own
  Communicator node_, cross_;  // hierarchical: inside the node / same node-local rank across nodes
  Communicator statistics_;    // the compute thread's own duplicate, for allreduce_statistics
  ParallelConfig options_;     // bucket sizes, overlap, hierarchical, compression (deck: parallel.*)
  Timeline* timeline_;
  BucketSchedule schedule_;
  bool hierarchical_ = false;
  std::vector<std::unique_ptr<Work>> work_;
  ReducerStats stats_;

  // Per step, guarded by mutex_ (the compute thread marks, the communication thread launches).
  std::vector<int> pending_;  // parameters still to report, per bucket (compute thread only)
  std::vector<char> ready_;
  bool communicate_ = false;
  bool step_open_ = false;
  bool draining_ = false;  // finish() is waiting: poll without sleeping
  int launched_ = 0, completed_ = 0;
  double step_comm_seconds_ = 0;
  bool stop_ = false;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::exception_ptr error_;
  std::thread thread_;
};

}  // namespace pdegen

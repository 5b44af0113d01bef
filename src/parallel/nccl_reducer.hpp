// The gradient reducer for a DEVICE gradient buffer (the registry finalized on Device::cuda): the
// same schedule, forms and contract as the MpiReducer (mpi_reducer.hpp), with NCCL on a communication
// stream of its own instead of MPI on a communication thread. No thread and no host wait:
//
//   grad_ready(id) fires on the host once the gradient's kernels are QUEUED on cuda::stream(). When
//   that completes the next bucket(s) in schedule order, the reducer records an event on
//   cuda::stream(), makes its communication stream wait for it, and enqueues the buckets'
//   collectives there. finish() enqueues the rest (buckets a rank without samples never reported),
//   records a "reduced" event on the communication stream and makes cuda::stream() wait for it, and
//   returns at once: whatever next reads the gradients on cuda::stream() reads the sums.
//
// Forms (parallel.*), each leaving bitwise the same gradient on every rank:
//   flat:          ncclAllReduce in place on the bucket's view of the flat buffer;
//   hierarchical:  staged into a zero-padded buffer of node_size * ceil(n / node_size) elements:
//                  ncclReduceScatter in the node, allreduce of the shard across nodes, ncclAllGather
//                  in the node, copied back;
//   compressed:    the MpiReducer's algorithm: 16-bit encode (padded to P * ceil(n / P)), all-to-all
//                  of the shards with ncclSend/ncclRecv in one group, an fp32 sum of the P shards in
//                  rank order rounded to 16 bits, ncclAllGather of the sums, decode. Bitwise the
//                  MpiReducer's result. In hierarchical mode the cross-node step is the compressed one.
//
// Each bucket is its own NCCL group: the buckets that are ready at one moment differ between ranks,
// and NCCL plans a group as a whole (algorithm, protocol and channels from the group's total size),
// so groups of different make-up on different ranks would not match (docs/parallel.md).
//
// stats() comes from CUDA events, read once they have completed (at the next begin_backward or
// stats() call), never waited for. No per-bucket timeline events: their GPU times would need a host
// wait to place on the host clock.
#pragma once

#include <memory>
#include <string>

#include "parallel/gradient_reducer.hpp"

namespace pdegen {

class NcclReducer final : public GradientReducer {
 public:
  // Collective over `comm` (schedule verification over MPI, then ncclCommInitRank on duplicates of
  // it); `params` must be finalized on Device::cuda, on the device cuda::select_device chose, one
  // GPU per rank (nccl_usable). `timeline` is accepted for the interface and not written to. Throws
  // in a CPU-only build.
  NcclReducer(ParameterRegistry& params, const Communicator& comm, const ParallelConfig& options,
              Timeline* timeline = nullptr);
  ~NcclReducer() override;  // waits for the communication stream; never throws
  NcclReducer(const NcclReducer&) = delete;
  NcclReducer& operator=(const NcclReducer&) = delete;

  void begin_backward(bool communicate) override;
  // Enqueues what is left and orders cuda::stream() after the reduction; does not wait.
  void finish() override;

  const BucketSchedule& schedule() const override;
  // Completed steps' times; a step whose events are still pending counts in `steps` only.
  const ReducerStats& stats() const override;
  bool hierarchical() const override;
  std::string describe() const override;
  // On the communication stream, after the buckets launched so far, with a communicator of its own
  // (created at the first call, which every rank makes at the same point); waits for the result.
  void allreduce_statistics(double* data, int count) override;

 private:
  struct State;  // CUDA objects and per-step bookkeeping (nccl_reducer.cpp)
  std::unique_ptr<State> state_;
};

}  // namespace pdegen

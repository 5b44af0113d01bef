// What the trainer needs of a gradient reducer, whichever buffer it reduces, and the factory that
// picks one: MpiReducer (mpi_reducer.hpp) for host gradient buffers, NcclReducer (nccl_reducer.hpp)
// for device ones.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>

#include "config/deck.hpp"
#include "core/parameter.hpp"
#include "core/timeline.hpp"
#include "parallel/bucket_schedule.hpp"
#include "parallel/communicator.hpp"

namespace pdegen {

// Running totals over the steps reduced so far.
struct ReducerStats {
  int64_t steps = 0;
  double comm_seconds = 0;     // sum over buckets of launch-to-completion time
  double exposed_seconds = 0;  // time the compute thread (NCCL: compute stream) waited for the reduction
  // The part of the reduction time that backward did not hide: 0 = fully overlapped, 1 = blocking.
  double exposed_fraction() const {
    return comm_seconds > 0 ? std::min(1.0, exposed_seconds / comm_seconds) : 0;
  }
};

// What the trainer needs of a gradient reducer, whichever buffer it reduces: the MpiReducer (host
// gradient buffers, a communication thread) or the NcclReducer (device gradient buffers, a
// communication stream ordered by events). Both keep the same contract.
class GradientReducer {
 public:
  virtual ~GradientReducer() = default;
  // Before each backward of a step; only the step's last micro-batch communicates.
  virtual void begin_backward(bool communicate) = 0;
  // After the step's last backward. The MpiReducer returns when the host buffer holds the sums;
  // the NcclReducer returns at once, having ordered the compute stream after the reduction.
  virtual void finish() = 0;
  virtual const BucketSchedule& schedule() const = 0;
  virtual const ReducerStats& stats() const = 0;
  virtual bool hierarchical() const = 0;
  virtual std::string describe() const = 0;
  // SUM over ranks of `count` host doubles, in place (synchronized batch norm's statistics), in the
  // reducer's own collective order: MPI on a communicator of its own; NCCL on the reducer's
  // communication stream, so no second NCCL communicator ever runs beside the gradient buckets.
  // Called from the compute thread at the same points of the same network on every rank.
  virtual void allreduce_statistics(double* data, int count) = 0;
};

// The communicators of the hierarchical form, decided from the node layout identically on every
// rank (collective over `comm`): `node` holds this node's ranks, `cross` the ranks of the same
// node-local rank on the other nodes. Throws UserError when hierarchical: on meets nodes of
// different sizes. Shared by both reducers so that they pick the same form.
struct ReductionGroups {
  bool hierarchical = false;
  Communicator node, cross;
};
ReductionGroups reduction_groups(const Communicator& comm, const ParallelConfig& options);

// The reducer for `params`' gradient buffer: the MpiReducer for a host buffer, the NcclReducer for
// a device one (a CPU-only build has no device buffers: it throws if it ever sees one). Collective.
std::unique_ptr<GradientReducer> make_reducer(ParameterRegistry& params, const Communicator& comm,
                                              const ParallelConfig& options, Timeline* timeline = nullptr);

}  // namespace pdegen

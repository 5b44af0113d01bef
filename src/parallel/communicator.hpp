// The process group a run trains on. Everything the trainer sums over ranks (loss, metrics,
// gradients, stop flags) goes through here, so one rank or many give the same numbers: the losses
// and gradients are SUMS divided by the global batch, never averages over ranks.
// The gradient reducer (mpi_reducer.hpp) works on its own duplicate, so that its communication thread
// never shares a communicator with the compute thread's collectives (batch-norm sums, the loss).
#pragma once

#include <mpi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace pdegen {

class Communicator {
 public:
  // Wraps an existing communicator (not owned); MPI_COMM_WORLD by default.
  explicit Communicator(MPI_Comm comm = MPI_COMM_WORLD);

  // New communicators, owned: freed (MPI_Comm_free) with the last copy of the Communicator.
  Communicator duplicate() const;
  Communicator split(int color, int key) const;
  // The ranks on this node (MPI_Comm_split_type SHARED). With PDEGEN_SIMULATED_NODE_SIZE=k in the
  // environment, blocks of k consecutive ranks instead: multi-node layouts, tested on one machine.
  Communicator node_local() const;

  int rank() const { return rank_; }
  int size() const { return size_; }
  MPI_Comm comm() const { return comm_; }

  void allreduce_sum(double* data, int64_t count) const;
  void allreduce_sum(float* data, int64_t count) const;
  void allreduce_max(double* data, int64_t count) const;
  double sum(double value) const;
  double max(double value) const;
  void broadcast(void* data, int64_t bytes, int root = 0) const;
  void broadcast(std::string& text, int root = 0) const;
  void barrier() const;
  // The smallest and largest `value` over the ranks (one allreduce).
  std::pair<int64_t, int64_t> range(int64_t value) const;
  // Checks that every rank passes the same value (a step number, a count), so a mismatch becomes an
  // error naming `what` instead of a collective that hangs or reads garbage.
  void check_same(int64_t value, const char* what) const;
  // Every rank's `text` at `root` (in rank order; empty elsewhere): timelines, reports.
  std::vector<std::string> gather(const std::string& text, int root = 0) const;

  // In place, over `count` elements split by share_of(count, rank, size): allgather takes this
  // rank's share and leaves all of `data` valid on every rank; reduce_scatter_sum leaves the sum over
  // ranks of this rank's share in that share (the rest of `data` is unspecified afterwards).
  void allgather(float* data, int64_t count) const;
  void reduce_scatter_sum(float* data, int64_t count) const;
  // The counts and displacements of share_of(count, r, size) for every rank r, as MPI ints.
  void share_counts(int64_t count, std::vector<int>& counts, std::vector<int>& displs) const;

 private:
  MPI_Comm comm_;
  std::shared_ptr<MPI_Comm> owned_;
  int rank_ = 0, size_ = 1;
};

// The contiguous share [begin, end) of `total` items that `rank` of `size` holds: the first
// total % size ranks hold one more. Every rank's samples keep their global indices whatever size is.
struct Share {
  int64_t begin = 0, end = 0;
  int64_t count() const { return end - begin; }
};
Share share_of(int64_t total, int rank, int size);

}  // namespace pdegen

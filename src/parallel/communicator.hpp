// The process group a run trains on. Everything the trainer sums over ranks (loss, metrics,
// gradients, stop flags) goes through here, so one rank or many give the same numbers: the losses
// and gradients are SUMS divided by the global batch, never averages over ranks.
// (The overlapping gradient reducer, NCCL and hierarchical groups come with the data-parallel issue.)
#pragma once

#include <mpi.h>

#include <cstdint>
#include <string>

namespace pdegen {

class Communicator {
 public:
  // Wraps an existing communicator (not owned); MPI_COMM_WORLD by default.
  explicit Communicator(MPI_Comm comm = MPI_COMM_WORLD);

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

 private:
  MPI_Comm comm_;
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

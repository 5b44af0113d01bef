// NCCL process group for DEVICE buffers: the GPU counterpart of Communicator (communicator.hpp),
// built collectively from an MPI communicator (rank 0 makes the NCCL id, MPI broadcasts it). Every
// operation is enqueued on the CUDA stream it is given and returns at once (except
// allreduce_sum_host); the caller orders producers and consumers on that stream. The header names
// no CUDA type, so CPU-only builds compile it; there the constructor throws.
//
// NCCL refuses two ranks of one communicator on the same GPU ("Duplicate GPU detected"):
// nccl_usable() says, collectively, whether this job's layout can work and why not.
#pragma once

#include <cstdint>
#include <string>

#include "parallel/communicator.hpp"

// cudaStream_t is `CUstream_st*` and ncclComm_t is `ncclComm*`: the same types, named without the
// CUDA headers.
struct CUstream_st;
struct ncclComm;

namespace pdegen {

using GpuStream = CUstream_st*;  // a cudaStream_t

class NcclCommunicator {
 public:
  // Collective over `comm`: ncclCommInitRank(comm.size(), id, comm.rank()) on the current device
  // (cuda::select_device first; one GPU per rank, see nccl_usable). Throws in a CPU-only build.
  explicit NcclCommunicator(const Communicator& comm);
  ~NcclCommunicator();  // ncclCommDestroy; never throws
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }

  // In place, SUM over ranks, of `count` device elements.
  void allreduce_sum(float* data, int64_t count, GpuStream stream) const;
  void allreduce_sum(double* data, int64_t count, GpuStream stream) const;

  // In place over EQUAL shards: `data` holds size() * shard elements and rank r's shard is
  // [r * shard, (r + 1) * shard). Callers with a count not divisible by size() pad (with zeros for
  // a sum). reduce_scatter_sum leaves the sum over ranks of this rank's shard in that shard (the
  // rest unspecified); allgather leaves every shard valid on every rank from its owner's.
  void reduce_scatter_sum(float* data, int64_t shard, GpuStream stream) const;
  void allgather(float* data, int64_t shard, GpuStream stream) const;
  // The same for any element type, as bytes: `shard_bytes` per rank (16-bit wire formats).
  void allgather_bytes(void* data, int64_t shard_bytes, GpuStream stream) const;

  // Point to point, `bytes` bytes with rank `peer` of this communicator. A rank that sends and
  // receives in one exchange must put both inside group_start()/group_end(), or NCCL may deadlock.
  void send(const void* data, int64_t bytes, int peer, GpuStream stream) const;
  void recv(void* data, int64_t bytes, int peer, GpuStream stream) const;
  // ncclGroupStart/End: the calls between them are issued together at group_end(). Every rank must
  // make the same calls in the same groups: NCCL plans a group as a whole.
  static void group_start();
  static void group_end();

  // SUM over ranks of `count` host doubles, in place: staged through a device buffer on
  // cuda::stream(), reduced there, copied back; returns when `host` holds the result. The
  // synchronized batch norm's StatsAllreduce (nn/batch_norm.hpp) on NCCL.
  void allreduce_sum_host(double* host, int count);

 private:
  ncclComm* comm_ = nullptr;
  int rank_ = 0, size_ = 1;
  double* staging_ = nullptr;  // device, for allreduce_sum_host
  int64_t staging_count_ = 0;
};

// Collective over `comm`: true when every rank has a GPU of its own, as NCCL requires: the CUDA
// backend is built, a device is present, the ranks of each node (MPI_Comm_split_type SHARED: the
// physical node, whatever PDEGEN_SIMULATED_NODE_SIZE says) each have a current device, and no two
// of them the same GPU (compared by PCI bus id, as NCCL does, so ranks that each see only their own
// GPU as device 0 pass; cuda::select_device(node-local rank) was called). Otherwise false with the
// reason in *reason; every rank returns the same answer.
bool nccl_usable(const Communicator& comm, std::string* reason = nullptr);

// Collective over `comm`: this rank's place among the ranks of its PHYSICAL node (MPI_Comm_split_type
// SHARED), whatever PDEGEN_SIMULATED_NODE_SIZE says: what cuda::select_device needs, since GPUs are
// shared by the processes of one machine (comm.node_local() with simulated nodes would give two
// ranks of one machine the same GPU). Works in every build.
int physical_node_rank(const Communicator& comm);

}  // namespace pdegen

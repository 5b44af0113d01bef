// NCCL process group for device buffers (see nccl_communicator.hpp). The CUDA build has the real
// calls; a CPU-only build compiles the same entry points, which say that NCCL is not built in.
#include "parallel/nccl_communicator.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include "core/error.hpp"

#ifdef PDEGEN_HAVE_CUDA
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_context.hpp"
#include "core/device_allocator.hpp"
#endif

namespace pdegen {

#ifdef PDEGEN_HAVE_CUDA

namespace {
// The id travels with rank 0's success flag, so a failing ncclGetUniqueId stops every rank with
// an error instead of leaving the others in ncclCommInitRank.
struct IdMessage {
  int ok = 0;
  ncclUniqueId id{};
};
}  // namespace

NcclCommunicator::NcclCommunicator(const Communicator& comm) : rank_(comm.rank()), size_(comm.size()) {
  IdMessage message;
  std::string failure;
  if (rank_ == 0) {
    const ncclResult_t r = ncclGetUniqueId(&message.id);
    message.ok = r == ncclSuccess;
    if (!message.ok) failure = ncclGetErrorString(r);
  }
  comm.broadcast(&message, sizeof message, 0);
  if (!message.ok)
    PDEGEN_THROW("ncclGetUniqueId failed on rank 0{}{}: no NCCL communicator", failure.empty() ? "" : ": ",
                 failure);
  ncclComm_t c = nullptr;
  NCCL_CHECK(ncclCommInitRank(&c, size_, message.id, rank_));
  comm_ = c;
}

NcclCommunicator::~NcclCommunicator() {
  try {
    if (staging_ != nullptr)
      cuda::DeviceAllocator::instance().release(staging_,
                                                static_cast<size_t>(staging_count_) * sizeof(double));
  } catch (...) {  // a destructor must not throw; the memory goes back with the process
  }
  if (comm_ != nullptr) (void)ncclCommDestroy(comm_);
}

void NcclCommunicator::allreduce_sum(float* data, int64_t count, GpuStream stream) const {
  if (size_ == 1 || count == 0) return;
  NCCL_CHECK(ncclAllReduce(data, data, static_cast<size_t>(count), ncclFloat32, ncclSum, comm_, stream));
}

void NcclCommunicator::allreduce_sum(double* data, int64_t count, GpuStream stream) const {
  if (size_ == 1 || count == 0) return;
  NCCL_CHECK(ncclAllReduce(data, data, static_cast<size_t>(count), ncclFloat64, ncclSum, comm_, stream));
}

// In place: NCCL's reduce-scatter writes rank r's result at recvbuff = sendbuff + r * shard, its
// allgather reads sendbuff = recvbuff + r * shard.
void NcclCommunicator::reduce_scatter_sum(float* data, int64_t shard, GpuStream stream) const {
  if (size_ == 1 || shard == 0) return;
  NCCL_CHECK(ncclReduceScatter(data, data + rank_ * shard, static_cast<size_t>(shard), ncclFloat32, ncclSum,
                               comm_, stream));
}

void NcclCommunicator::allgather(float* data, int64_t shard, GpuStream stream) const {
  if (size_ == 1 || shard == 0) return;
  NCCL_CHECK(
      ncclAllGather(data + rank_ * shard, data, static_cast<size_t>(shard), ncclFloat32, comm_, stream));
}

void NcclCommunicator::allgather_bytes(void* data, int64_t shard_bytes, GpuStream stream) const {
  if (size_ == 1 || shard_bytes == 0) return;
  char* bytes = static_cast<char*>(data);
  NCCL_CHECK(ncclAllGather(bytes + rank_ * shard_bytes, bytes, static_cast<size_t>(shard_bytes), ncclUint8,
                           comm_, stream));
}

void NcclCommunicator::send(const void* data, int64_t bytes, int peer, GpuStream stream) const {
  PDEGEN_CHECK(peer >= 0 && peer < size_, "NCCL send to rank {} of {}", peer, size_);
  NCCL_CHECK(ncclSend(data, static_cast<size_t>(bytes), ncclUint8, peer, comm_, stream));
}

void NcclCommunicator::recv(void* data, int64_t bytes, int peer, GpuStream stream) const {
  PDEGEN_CHECK(peer >= 0 && peer < size_, "NCCL receive from rank {} of {}", peer, size_);
  NCCL_CHECK(ncclRecv(data, static_cast<size_t>(bytes), ncclUint8, peer, comm_, stream));
}

void NcclCommunicator::group_start() { NCCL_CHECK(ncclGroupStart()); }
void NcclCommunicator::group_end() { NCCL_CHECK(ncclGroupEnd()); }

void NcclCommunicator::allreduce_sum_host(double* host, int count) {
  if (size_ == 1 || count <= 0) return;
  auto& allocator = cuda::DeviceAllocator::instance();
  if (staging_count_ < count) {
    if (staging_ != nullptr)
      allocator.release(staging_, static_cast<size_t>(staging_count_) * sizeof(double));
    staging_ = nullptr;
    staging_count_ = 0;
    staging_ = static_cast<double*>(allocator.allocate(static_cast<size_t>(count) * sizeof(double)));
    staging_count_ = count;
  }
  const cudaStream_t s = cuda::stream();
  const size_t bytes = static_cast<size_t>(count) * sizeof(double);
  CUDA_CHECK(cudaMemcpyAsync(staging_, host, bytes, cudaMemcpyHostToDevice, s));
  allreduce_sum(staging_, count, s);
  CUDA_CHECK(cudaMemcpyAsync(host, staging_, bytes, cudaMemcpyDeviceToHost, s));
  CUDA_CHECK(cudaStreamSynchronize(s));
}

bool nccl_usable(const Communicator& comm, std::string* reason) {
  // Each rank's own verdict first, without throwing: every rank must reach the collectives below.
  // GPUs are told apart by PCI bus id, as NCCL's own "Duplicate GPU" check does, not by CUDA ordinal:
  // where each rank sees only its own GPU (CUDA_VISIBLE_DEVICES per rank, jsrun -g1, srun
  // --gpus-per-task=1) every rank's device is 0, and they still are distinct GPUs.
  constexpr int bus_id_chars = 32;  // "0000:3b:00.0" and a NUL, with room to spare
  std::string local;
  int count = 0, device = -1;
  char bus_id[bus_id_chars] = {};  // empty: no GPU selected (this rank reports why)
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    local = fmt::format("no usable CUDA device: {}", cudaGetErrorString(e));
    count = 0;
  } else if (count == 0) {
    local = "no CUDA device present";
  } else if (const cudaError_t d = cudaGetDevice(&device); d != cudaSuccess) {
    (void)cudaGetLastError();
    local = fmt::format("cudaGetDevice failed: {}", cudaGetErrorString(d));
    device = -1;
  } else if (const cudaError_t b = cudaDeviceGetPCIBusId(bus_id, bus_id_chars, device); b != cudaSuccess) {
    (void)cudaGetLastError();
    local = fmt::format("cudaDeviceGetPCIBusId failed: {}", cudaGetErrorString(b));
    bus_id[0] = '\0';
  }
  bus_id[bus_id_chars - 1] = '\0';
  // The physical node (not node_local(), which PDEGEN_SIMULATED_NODE_SIZE may redraw): GPUs are
  // shared by the processes of one machine.
  MPI_Comm node;
  MPI_CHECK(MPI_Comm_split_type(comm.comm(), MPI_COMM_TYPE_SHARED, comm.rank(), MPI_INFO_NULL, &node));
  int node_size = 1;
  MPI_CHECK(MPI_Comm_size(node, &node_size));
  std::vector<char> bus_ids(static_cast<size_t>(node_size) * bus_id_chars);
  MPI_CHECK(MPI_Allgather(bus_id, bus_id_chars, MPI_CHAR, bus_ids.data(), bus_id_chars, MPI_CHAR, node));
  MPI_CHECK(MPI_Comm_free(&node));
  if (local.empty()) {
    // The node's selected GPUs (an empty id: a rank without one, which reports that itself).
    std::vector<std::string> sorted;
    for (int r = 0; r < node_size; ++r) {
      std::string id(bus_ids.data() + static_cast<size_t>(r) * bus_id_chars);
      if (!id.empty()) sorted.push_back(std::move(id));
    }
    std::sort(sorted.begin(), sorted.end());
    const auto dup = std::adjacent_find(sorted.begin(), sorted.end());
    if (dup != sorted.end() && node_size > count)
      local = fmt::format(
          "{} ranks on this node share its {} GPU(s) (GPU {} twice), and NCCL needs a GPU per rank (it stops "
          "with \"Duplicate GPU detected\"): start at most {} rank(s) per node",
          node_size, count, *dup, count);
    else if (dup != sorted.end())
      local = fmt::format(
          "ranks of this node use the same GPU (PCI {}): select one GPU per rank first "
          "(cuda::select_device(node-local rank))",
          *dup);
  }
  // Every rank reports the first failing rank's reason.
  int first_bad = local.empty() ? comm.size() : comm.rank();
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &first_bad, 1, MPI_INT, MPI_MIN, comm.comm()));
  if (first_bad == comm.size()) return true;
  std::string message = local;
  comm.broadcast(message, first_bad);
  if (reason) *reason = comm.size() > 1 ? fmt::format("rank {}: {}", first_bad, message) : message;
  return false;
}

#else  // CPU-only build: the same entry points, none of which can run.

namespace {
constexpr const char* not_built =
    "built without the CUDA backend (configure with the 'cuda' preset or -DPDEGEN_CUDA=ON)";
}

NcclCommunicator::NcclCommunicator(const Communicator& /*comm*/) {
  PDEGEN_THROW("cannot create an NCCL communicator: this pdegen was {}", not_built);
}
NcclCommunicator::~NcclCommunicator() = default;
void NcclCommunicator::allreduce_sum(float*, int64_t, GpuStream) const {
  PDEGEN_THROW("NCCL: {}", not_built);
}
void NcclCommunicator::allreduce_sum(double*, int64_t, GpuStream) const {
  PDEGEN_THROW("NCCL: {}", not_built);
}
void NcclCommunicator::reduce_scatter_sum(float*, int64_t, GpuStream) const {
  PDEGEN_THROW("NCCL: {}", not_built);
}
void NcclCommunicator::allgather(float*, int64_t, GpuStream) const { PDEGEN_THROW("NCCL: {}", not_built); }
void NcclCommunicator::allgather_bytes(void*, int64_t, GpuStream) const {
  PDEGEN_THROW("NCCL: {}", not_built);
}
void NcclCommunicator::send(const void*, int64_t, int, GpuStream) const {
  PDEGEN_THROW("NCCL: {}", not_built);
}
void NcclCommunicator::recv(void*, int64_t, int, GpuStream) const { PDEGEN_THROW("NCCL: {}", not_built); }
void NcclCommunicator::group_start() { PDEGEN_THROW("NCCL: {}", not_built); }
void NcclCommunicator::group_end() { PDEGEN_THROW("NCCL: {}", not_built); }
void NcclCommunicator::allreduce_sum_host(double*, int) { PDEGEN_THROW("NCCL: {}", not_built); }

bool nccl_usable(const Communicator& /*comm*/, std::string* reason) {
  if (reason) *reason = not_built;
  return false;
}

#endif  // PDEGEN_HAVE_CUDA

int physical_node_rank(const Communicator& comm) {
  MPI_Comm node;
  MPI_CHECK(MPI_Comm_split_type(comm.comm(), MPI_COMM_TYPE_SHARED, comm.rank(), MPI_INFO_NULL, &node));
  int rank = 0;
  MPI_CHECK(MPI_Comm_rank(node, &rank));
  MPI_CHECK(MPI_Comm_free(&node));
  return rank;
}

}  // namespace pdegen

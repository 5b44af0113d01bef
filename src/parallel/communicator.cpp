// MPI process group for host buffers (see communicator.hpp).
#include "parallel/communicator.hpp"

#include <limits>

#include "core/error.hpp"

namespace pdegen {

Communicator::Communicator(MPI_Comm comm) : comm_(comm) {
  MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
  MPI_CHECK(MPI_Comm_size(comm_, &size_));
}

namespace {
// MPI counts are int: large buffers go in chunks.
template <class T>
void allreduce_chunked(T* data, int64_t count, MPI_Datatype type, MPI_Op op, MPI_Comm comm) {
  constexpr int64_t chunk = std::numeric_limits<int>::max() / 2;
  for (int64_t off = 0; off < count; off += chunk) {
    const int n = static_cast<int>(std::min(chunk, count - off));
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, data + off, n, type, op, comm));
  }
}
}  // namespace

void Communicator::allreduce_sum(double* data, int64_t count) const {
  if (size_ > 1) allreduce_chunked(data, count, MPI_DOUBLE, MPI_SUM, comm_);
}
void Communicator::allreduce_sum(float* data, int64_t count) const {
  if (size_ > 1) allreduce_chunked(data, count, MPI_FLOAT, MPI_SUM, comm_);
}
void Communicator::allreduce_max(double* data, int64_t count) const {
  if (size_ > 1) allreduce_chunked(data, count, MPI_DOUBLE, MPI_MAX, comm_);
}
double Communicator::sum(double value) const {
  allreduce_sum(&value, 1);
  return value;
}
double Communicator::max(double value) const {
  allreduce_max(&value, 1);
  return value;
}

void Communicator::broadcast(void* data, int64_t bytes, int root) const {
  if (size_ == 1) return;
  PDEGEN_CHECK(bytes <= std::numeric_limits<int>::max(), "broadcast of {} bytes", bytes);
  MPI_CHECK(MPI_Bcast(data, static_cast<int>(bytes), MPI_BYTE, root, comm_));
}

void Communicator::broadcast(std::string& text, int root) const {
  if (size_ == 1) return;
  int64_t n = static_cast<int64_t>(text.size());
  broadcast(&n, sizeof n, root);
  text.resize(static_cast<size_t>(n));
  broadcast(text.data(), n, root);
}

void Communicator::barrier() const {
  if (size_ > 1) MPI_CHECK(MPI_Barrier(comm_));
}

Share share_of(int64_t total, int rank, int size) {
  const int64_t base = total / size, extra = total % size;
  const int64_t begin = rank * base + std::min<int64_t>(rank, extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}

}  // namespace pdegen

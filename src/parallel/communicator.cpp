// MPI process group for host buffers (see communicator.hpp).
#include "parallel/communicator.hpp"

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <string>

#include "core/error.hpp"
#include "core/watchdog.hpp"

namespace pdegen {

Communicator::Communicator(MPI_Comm comm) : comm_(comm) {
  MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
  MPI_CHECK(MPI_Comm_size(comm_, &size_));
}

namespace {
std::shared_ptr<MPI_Comm> own(MPI_Comm comm) {
  return std::shared_ptr<MPI_Comm>(new MPI_Comm(comm), [](MPI_Comm* c) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && *c != MPI_COMM_NULL) MPI_Comm_free(c);
    delete c;
  });
}
}  // namespace

Communicator Communicator::duplicate() const {
  MPI_Comm dup;
  MPI_CHECK(MPI_Comm_dup(comm_, &dup));
  Communicator c(dup);
  c.owned_ = own(dup);
  return c;
}

Communicator Communicator::split(int color, int key) const {
  MPI_Comm sub;
  MPI_CHECK(MPI_Comm_split(comm_, color, key, &sub));
  Communicator c(sub);
  c.owned_ = own(sub);
  return c;
}

Communicator Communicator::node_local() const {
  if (const char* env = std::getenv("PDEGEN_SIMULATED_NODE_SIZE"); env && *env) {
    const int k = std::atoi(env);
    if (k <= 0) throw UserError(fmt::format("PDEGEN_SIMULATED_NODE_SIZE={} is not a positive integer", env));
    return split(rank_ / k, rank_);
  }
  MPI_Comm sub;
  MPI_CHECK(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &sub));
  Communicator c(sub);
  c.owned_ = own(sub);
  return c;
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
  if (size_ == 1) return;
  const watchdog::Wait wait("a sum over ranks (MPI_Allreduce)");
  allreduce_chunked(data, count, MPI_DOUBLE, MPI_SUM, comm_);
}
void Communicator::allreduce_sum(float* data, int64_t count) const {
  if (size_ == 1) return;
  const watchdog::Wait wait("a sum over ranks (MPI_Allreduce)");
  allreduce_chunked(data, count, MPI_FLOAT, MPI_SUM, comm_);
}
void Communicator::allreduce_max(double* data, int64_t count) const {
  if (size_ == 1) return;
  const watchdog::Wait wait("a maximum over ranks (MPI_Allreduce)");
  allreduce_chunked(data, count, MPI_DOUBLE, MPI_MAX, comm_);
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
  const watchdog::Wait wait("a broadcast (MPI_Bcast)");
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
  if (size_ == 1) return;
  const watchdog::Wait wait("a barrier (MPI_Barrier)");
  MPI_CHECK(MPI_Barrier(comm_));
}

std::pair<int64_t, int64_t> Communicator::range(int64_t value) const {
  if (size_ == 1) return {value, value};
  int64_t v[2] = {value, -value};  // [max, -min] in one MAX reduction
  const watchdog::Wait wait("a consistency check (MPI_Allreduce)");
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_INT64_T, MPI_MAX, comm_));
  return {-v[1], v[0]};
}

void Communicator::check_same(int64_t value, const char* what) const {
  const auto [lo, hi] = range(value);
  if (lo != hi)
    PDEGEN_THROW("ranks disagree on {}: values range from {} to {} (this rank: {})", what, lo, hi, value);
}

std::vector<std::string> Communicator::gather(const std::string& text, int root) const {
  if (size_ == 1) return {text};
  PDEGEN_CHECK(text.size() <= static_cast<size_t>(std::numeric_limits<int>::max()), "gather of {} bytes",
               text.size());
  int n = static_cast<int>(text.size());
  const watchdog::Wait wait("a gather (MPI_Gatherv)");
  std::vector<int> lengths(rank_ == root ? static_cast<size_t>(size_) : 0), displs;
  MPI_CHECK(MPI_Gather(&n, 1, MPI_INT, lengths.data(), 1, MPI_INT, root, comm_));
  std::string all;
  if (rank_ == root) {
    int64_t total = 0;
    for (int len : lengths) displs.push_back(static_cast<int>(total)), total += len;
    PDEGEN_CHECK(total <= std::numeric_limits<int>::max(), "gather of {} bytes in all", total);
    all.resize(static_cast<size_t>(total));
  }
  MPI_CHECK(MPI_Gatherv(text.data(), n, MPI_CHAR, all.data(), lengths.data(), displs.data(), MPI_CHAR, root,
                        comm_));
  std::vector<std::string> out;
  for (size_t r = 0; r < lengths.size(); ++r)
    out.push_back(all.substr(static_cast<size_t>(displs[r]), static_cast<size_t>(lengths[r])));
  return out;
}

void Communicator::share_counts(int64_t count, std::vector<int>& counts, std::vector<int>& displs) const {
  PDEGEN_CHECK(count <= std::numeric_limits<int>::max(),
               "a collective of {} elements exceeds MPI's int count", count);
  counts.resize(static_cast<size_t>(size_));
  displs.resize(static_cast<size_t>(size_));
  for (int r = 0; r < size_; ++r) {
    const Share s = share_of(count, r, size_);
    counts[static_cast<size_t>(r)] = static_cast<int>(s.count());
    displs[static_cast<size_t>(r)] = static_cast<int>(s.begin);
  }
}

void Communicator::allgather(float* data, int64_t count) const {
  if (size_ == 1) return;
  std::vector<int> counts, displs;
  share_counts(count, counts, displs);
  const watchdog::Wait wait("an allgather (MPI_Allgatherv)");
  MPI_CHECK(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data, counts.data(), displs.data(), MPI_FLOAT,
                           comm_));
}

void Communicator::reduce_scatter_sum(float* data, int64_t count) const {
  if (size_ == 1) return;
  std::vector<int> counts, displs;
  share_counts(count, counts, displs);
  // MPI_Reduce_scatter in place leaves the result at the START of the buffer; move it to its share.
  const watchdog::Wait wait("a reduce-scatter (MPI_Reduce_scatter)");
  MPI_CHECK(MPI_Reduce_scatter(MPI_IN_PLACE, data, counts.data(), MPI_FLOAT, MPI_SUM, comm_));
  const Share mine = share_of(count, rank_, size_);
  if (mine.begin > 0) std::copy_backward(data, data + mine.count(), data + mine.end);
}

Share share_of(int64_t total, int rank, int size) {
  const int64_t base = total / size, extra = total % size;
  const int64_t begin = rank * base + std::min<int64_t>(rank, extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}

}  // namespace pdegen

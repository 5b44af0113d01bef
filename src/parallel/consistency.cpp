// Replica checksum (see consistency.hpp).
#include "parallel/consistency.hpp"

#include <cstring>

#include "core/error.hpp"
#include "core/watchdog.hpp"

namespace pdegen {

uint64_t state_checksum(const std::vector<const Tensor*>& tensors) {
  // sum_i w_i * (2 i + 1) over 32-bit words: odd multipliers are invertible mod 2^64, so one changed
  // word always changes the sum; the position weight catches swaps. Vectorises; integer, so exact.
  uint64_t sum = 0, position = 0;
  for (const Tensor* t : tensors) {
    const size_t words = t->nbytes() / 4;
    const auto* w = static_cast<const uint32_t*>(t->raw());
    uint64_t s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static)
    for (size_t i = 0; i < words; ++i) s += static_cast<uint64_t>(w[i]) * (2 * (position + i) + 1);
    sum += s;
    position += words;
    // A trailing 16-bit half word (fp16 tensors of odd length).
    if (t->nbytes() % 4) {
      uint16_t tail = 0;
      std::memcpy(&tail, static_cast<const char*>(t->raw()) + words * 4, 2);
      sum += static_cast<uint64_t>(tail) * (2 * position++ + 1);
    }
  }
  return sum;
}

void check_replicas_identical(uint64_t checksum, const Communicator& comm, int64_t step) {
  if (comm.size() == 1) return;
  uint64_t v[2] = {checksum, ~checksum};
  const watchdog::Wait wait("the replica consistency check (MPI_Allreduce)");
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_UINT64_T, MPI_MAX, comm.comm()));
  if (v[0] != ~v[1])
    PDEGEN_THROW(
        "replica drift after step {}: the parameters and optimizer state differ between ranks (checksums "
        "{:016x} to {:016x}, this rank {:016x}). Data-parallel training must keep them identical; this is a "
        "bug or a hardware fault: please report it with the deck",
        step, ~v[1], v[0], checksum);
}

}  // namespace pdegen

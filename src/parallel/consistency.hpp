// Replica consistency: data-parallel training keeps parameters and optimizer state identical on
// every rank by construction (same reduced gradients, same element-wise updates). A bug, a
// non-deterministic library or a bit flip would break that silently; a cheap checksum compared
// across ranks every `parallel.consistency_every` steps turns it into a clear stop.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.hpp"
#include "parallel/communicator.hpp"

namespace pdegen {

// Position-sensitive 64-bit checksum of the bits of `tensors` (host, any dtype): any single changed
// bit, and any swap of two different words, changes it.
uint64_t state_checksum(const std::vector<const Tensor*>& tensors);

// Collective. Throws Error on every rank when the ranks' checksums differ, naming `step` and the
// ranks' checksum range.
void check_replicas_identical(uint64_t checksum, const Communicator& comm, int64_t step);

}  // namespace pdegen

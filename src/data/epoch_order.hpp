// The order in which training visits a dataset's records: position g of the training sample stream
// (the global sample index) is record order[g mod N] of epoch g / N, where order is a permutation
// drawn from (seed, epoch) alone. Every rank computes the same permutation without communicating,
// each takes the positions of its share of the batch, so every record is visited exactly once per
// epoch on any number of ranks, and a restart at any step continues the same sequence.
#pragma once

#include <cstdint>
#include <vector>

namespace pdegen::data {

// The permutation of [0, n) of `epoch` (Fisher-Yates over Philox draws of (seed, epoch)); the
// identity when `shuffle` is false.
std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, uint64_t epoch, bool shuffle);

class EpochOrder {
 public:
  EpochOrder(int64_t records, uint64_t seed, bool shuffle) : n_(records), seed_(seed), shuffle_(shuffle) {}
  int64_t records() const { return n_; }
  // The record at stream position g (keeps the permutations of the last two epochs asked for, so
  // a batch across an epoch's end, and reading ahead of it, compute each once).
  int64_t record(uint64_t g);
  static uint64_t epoch_of(uint64_t g, int64_t n) { return g / static_cast<uint64_t>(n); }

 private:
  int64_t n_;
  uint64_t seed_;
  bool shuffle_;
  struct Cached {
    uint64_t epoch = ~uint64_t{0};
    std::vector<int64_t> order;
  };
  Cached cached_[2];
  int newest_ = 0;
};

}  // namespace pdegen::data

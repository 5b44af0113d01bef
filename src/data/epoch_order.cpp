// The epoch order (see epoch_order.hpp).
#include "data/epoch_order.hpp"

#include <numeric>
#include <utility>

#include "core/rng.hpp"

namespace pdegen::data {

namespace {
// Separates the shuffle's draws from every other use of the seed (sampler, initialisation).
constexpr uint64_t shuffle_stream = 0x5348554646'4c45ull;  // "SHUFFLE"
}  // namespace

std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, uint64_t epoch, bool shuffle) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  if (!shuffle) return order;
  const uint64_t stream = shuffle_stream ^ (epoch << 8);
  for (int64_t i = n - 1; i > 0; --i) {
    // A 64-bit draw reduced modulo i + 1: bias below (i + 1) / 2^64, nothing for any n that fits memory.
    const Words4 w = random_words(seed, stream, static_cast<uint64_t>(i));
    const uint64_t r = (static_cast<uint64_t>(w.v[0]) << 32) | w.v[1];
    const auto j = static_cast<int64_t>(r % static_cast<uint64_t>(i + 1));
    std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(j)]);
  }
  return order;
}

int64_t EpochOrder::record(uint64_t g) {
  const uint64_t epoch = epoch_of(g, n_);
  int slot = cached_[0].epoch == epoch ? 0 : cached_[1].epoch == epoch ? 1 : -1;
  if (slot < 0) {
    slot = 1 - newest_;
    cached_[slot] = {epoch, epoch_permutation(n_, seed_, epoch, shuffle_)};
    newest_ = slot;
  }
  return cached_[slot].order[static_cast<size_t>(g % static_cast<uint64_t>(n_))];
}

}  // namespace pdegen::data

// Counter-based random numbers (Philox4x32-10, Salmon et al. 2011): the value for (seed, stream,
// index) is a pure function of those three, so a sample drawn by global index is the same on one
// rank or a thousand, on the CPU or the GPU, whatever the batch around it. No state, no streams.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/hd.hpp"

namespace pdegen {

struct Words4 {
  uint32_t v[4];
};

PDEGEN_HD void philox_mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

// The Random123 reference algorithm: 10 rounds, multipliers and Weyl key increments as published.
PDEGEN_HD Words4 philox4x32_10(Words4 ctr, uint32_t k0, uint32_t k1) {
  constexpr uint32_t m0 = 0xD2511F53u, m1 = 0xCD9E8D57u, w0 = 0x9E3779B9u, w1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(m0, ctr.v[0], hi0, lo0);
    philox_mulhilo(m1, ctr.v[2], hi1, lo1);
    ctr = Words4{{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
    k0 += w0;
    k1 += w1;
  }
  return ctr;
}

// Four independent 32-bit words for (seed, stream, index). `stream` separates uses (sampler,
// weight initialisation, ...), `index` enumerates draws within a use.
PDEGEN_HD Words4 random_words(uint64_t seed, uint64_t stream, uint64_t index) {
  return philox4x32_10(Words4{{static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32),
                               static_cast<uint32_t>(stream), static_cast<uint32_t>(stream >> 32)}},
                       static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// 53 random bits -> [0, 1).
PDEGEN_HD double bits_to_unit(uint32_t hi, uint32_t lo) {
  const uint64_t b = (static_cast<uint64_t>(hi) << 21) ^ (lo >> 11);
  return static_cast<double>(b & ((uint64_t{1} << 53) - 1)) * (1.0 / 9007199254740992.0);
}

// Uniform on [0, 1) in double precision.
PDEGEN_HD double random_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
  const Words4 w = random_words(seed, stream, index);
  return bits_to_unit(w.v[0], w.v[1]);
}

// Standard normal (Box-Muller on both word pairs of one Philox block; uses the cosine branch).
PDEGEN_HD double random_normal(uint64_t seed, uint64_t stream, uint64_t index) {
  const Words4 w = random_words(seed, stream, index);
  const double u1 = 1.0 - bits_to_unit(w.v[0], w.v[1]);  // (0, 1]: log is finite
  const double u2 = bits_to_unit(w.v[2], w.v[3]);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586476925 * u2);
}

// Named streams: one per use, so adding a use never shifts another's numbers.
namespace rng_stream {
inline constexpr uint64_t weight_init = 1;
inline constexpr uint64_t train_samples = 2;
inline constexpr uint64_t eval_samples = 3;
inline constexpr uint64_t tests = 100;
}  // namespace rng_stream

}  // namespace pdegen

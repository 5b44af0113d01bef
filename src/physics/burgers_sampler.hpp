// The burgers1d initial conditions: b(x) = (1/K) sum_k (1 - cos(2 pi c_k x)) / 2 with K =
// `ic_terms` frequencies drawn by (seed, global sample index), so a sample is the same whatever
// batch, rank or device draws it. The network input has three channels at every node (n, j): b(x_j)
// (b broadcast along t), x_j and t_n / T, because a convolutional network cannot otherwise tell
// where in x and t a pixel is (docs/theory.md, "burgers1d").
#pragma once

#include <cstdint>
#include <vector>

#include "config/deck.hpp"
#include "core/tensor.hpp"

namespace pdegen {

// Philox stream family of the frequencies (KL coefficients are family 4). Frequency k of sample g
// uses U_k = random_uniform(seed, burgers_stream(k), g).
inline constexpr uint64_t burgers_frequencies = 5;
constexpr uint64_t burgers_stream(int k) { return (burgers_frequencies << 32) | static_cast<uint32_t>(k); }

class BurgersSampler {
 public:
  static constexpr int channels = 3;

  // Node (n, j) of a sample at (x, t) = (j / (nx - 1), n T / (nt - 1)).
  BurgersSampler(const BurgersSettings& settings, int nx, int nt);

  // The K frequencies of sample g: `random` draws each uniformly in [c_min, c_max]; `fixed_uniform`
  // spaces them evenly, c_k = c_min + (k + U) (c_max - c_min) / K with one U per sample.
  std::vector<double> frequencies(uint64_t seed, uint64_t g) const;
  // b(x) for the frequencies c: in [0, 1], b(0) = 0.
  static double initial_value(const std::vector<double>& c, double x);

  // Channels b(x_j), x_j, t_n / T at every node (n, j), plain fp32 [b, channels, nt, nx], written in
  // place when `input` already has that shape, otherwise replaced.
  void sample(uint64_t seed, const std::vector<uint64_t>& global_indices, Tensor& input) const;

 private:
  BurgersSettings settings_;
  int nx_, nt_;
};

}  // namespace pdegen

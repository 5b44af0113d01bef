// The poisson2d and poisson3d coefficient sampler: log nu on the n^Dim grid as a truncated KL
// expansion whose coefficients are drawn by (seed, global sample index), so a sample is the same
// whatever batch, rank or device draws it (docs/theory.md, "poisson2d").
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "config/deck.hpp"
#include "core/grid_box.hpp"
#include "core/tensor.hpp"
#include "physics/kl_expansion.hpp"

namespace pdegen {

// Philox stream family of the KL coefficients (core/rng.hpp's named streams are small numbers, so
// family << 32 never meets them). Coefficient k of sample g is drawn from
//   U = random_uniform(seed, kl_stream(k), g),  kl_stream(k) = (kl_coefficients << 32) | k,
//   omega_k = omega_max * (2 U - 1).
inline constexpr uint64_t kl_coefficients = 4;
constexpr uint64_t kl_stream(int k) { return (kl_coefficients << 32) | static_cast<uint32_t>(k); }

// Dim = 2 or 3: log nu on the n^Dim grid, written [b, 1, n, n] or [b, 1, n, n, n] (x fastest).
template <int Dim>
class KlSampler {
 public:
  // Node (i, j[, k]) at (i h, j h[, k h]), h = 1 / (resolution - 1).
  KlSampler(const PoissonSettings& settings, int resolution);

  // log nu = sigma * sum_k omega_k weight_k prod_d phi_{index_d k}(x_d) for each global index, in
  // double, stored fp32. `log_nu` is written in place when it already is a plain fp32 [b, 1, n, ...]
  // tensor (b = global_indices.size()), otherwise replaced by a new one.
  void sample(uint64_t seed, const std::vector<uint64_t>& global_indices, Tensor& log_nu) const;
  // log nu of sample g on `box` (Dim axes, slowest first) into `out` (box.numel() floats, x
  // fastest): bit for bit that box of sample(), at the cost of the box alone (tiled inference).
  void sample_box(uint64_t seed, uint64_t g, const GridBox& box, float* out) const;

  // The m coefficients omega_k of sample g.
  std::vector<double> omegas(uint64_t seed, uint64_t g) const;

  const std::vector<kl::Mode<Dim>>& modes() const { return modes_; }
  int resolution() const { return n_; }

 private:
  PoissonSettings settings_;
  int n_;
  std::vector<kl::Mode<Dim>> modes_;
  // phi_[d][k * n + node]: the 1D factor along axis d of mode k at the n nodes, mode-major.
  std::array<std::vector<double>, Dim> phi_;
};

extern template class KlSampler<2>;
extern template class KlSampler<3>;

}  // namespace pdegen

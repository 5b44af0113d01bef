// The flat parameter buffer cut into work items that never cross a parameter, for the per-parameter
// (layer-wise) reductions of LARS and LAMB. Each parameter is split into fixed-size chunks; a chunk
// is summed by one thread in a fixed order and a parameter's chunk sums are added in chunk order,
// so every per-parameter norm has the same bits for any number of threads (and on every rank).
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "core/parameter.hpp"

namespace pdegen {

class ParameterChunks {
 public:
  static constexpr int64_t chunk_elements = 1 << 14;

  // The parameters of `params` (finalized), in registration order; padding is in no chunk.
  explicit ParameterChunks(const ParameterRegistry& params);

  struct Chunk {
    int param;           // index into params()
    int64_t begin, end;  // flat element range [begin, end)
  };
  struct Range {
    int64_t offset, numel;  // of one parameter in the flat buffers
  };
  const std::vector<Range>& params() const { return params_; }
  const std::vector<Chunk>& chunks() const { return chunks_; }

  // Per parameter, K sums: `accumulate(begin, end, acc)` adds the terms of flat elements
  // [begin, end) into acc[0..K) (acc starts at zero for every chunk).
  template <int K, class Accumulate>
  std::vector<std::array<double, K>> sums(Accumulate&& accumulate) const {
    const int64_t n = static_cast<int64_t>(chunks_.size());
    std::vector<std::array<double, K>> partial(chunks_.size());
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < n; ++c) {
      std::array<double, K> acc{};
      accumulate(chunks_[static_cast<size_t>(c)].begin, chunks_[static_cast<size_t>(c)].end, acc.data());
      partial[static_cast<size_t>(c)] = acc;
    }
    std::vector<std::array<double, K>> total(params_.size(), std::array<double, K>{});
    for (size_t c = 0; c < chunks_.size(); ++c)
      for (int k = 0; k < K; ++k) total[static_cast<size_t>(chunks_[c].param)][k] += partial[c][k];
    return total;
  }

  // Runs `apply(param, begin, end)` over every chunk, in parallel (element-wise updates).
  template <class Apply>
  void for_each(Apply&& apply) const {
    const int64_t n = static_cast<int64_t>(chunks_.size());
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < n; ++c) {
      const Chunk& ch = chunks_[static_cast<size_t>(c)];
      apply(ch.param, ch.begin, ch.end);
    }
  }

 private:
  std::vector<Range> params_;
  std::vector<Chunk> chunks_;
};

}  // namespace pdegen

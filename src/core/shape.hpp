// A tensor shape: up to 5 extents (N, C, [D,] H, W), stored inline so shapes are cheap to copy
// and usable as cache keys.
#pragma once

#include <fmt/format.h>

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "core/error.hpp"

namespace pdegen {

class Shape {
 public:
  static constexpr int max_rank = 6;

  Shape() = default;
  Shape(std::initializer_list<int64_t> dims) {
    PDEGEN_CHECK(dims.size() <= max_rank, "rank {} exceeds {}", dims.size(), max_rank);
    for (int64_t d : dims) push_back(d);
  }
  template <class It>
  Shape(It first, It last) {
    for (; first != last; ++first) push_back(static_cast<int64_t>(*first));
  }

  void push_back(int64_t d) {
    PDEGEN_CHECK(rank_ < max_rank, "rank exceeds {}", max_rank);
    PDEGEN_CHECK(d >= 0, "negative extent {}", d);
    dims_[static_cast<size_t>(rank_++)] = d;
  }
  int rank() const { return rank_; }
  int64_t operator[](int i) const { return dims_[static_cast<size_t>(i < 0 ? i + rank_ : i)]; }
  int64_t& operator[](int i) { return dims_[static_cast<size_t>(i < 0 ? i + rank_ : i)]; }
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < rank_; ++i) n *= dims_[static_cast<size_t>(i)];
    return n;
  }
  // Product of the extents after the channel axis (the spatial size of an N,C,... tensor).
  int64_t spatial() const {
    int64_t n = 1;
    for (int i = 2; i < rank_; ++i) n *= dims_[static_cast<size_t>(i)];
    return n;
  }
  const int64_t* begin() const { return dims_.data(); }
  const int64_t* end() const { return dims_.data() + rank_; }
  bool operator==(const Shape& o) const {
    if (rank_ != o.rank_) return false;
    for (int i = 0; i < rank_; ++i)
      if (dims_[static_cast<size_t>(i)] != o.dims_[static_cast<size_t>(i)]) return false;
    return true;
  }
  std::string str() const { return fmt::format("[{}]", fmt::join(begin(), end(), ", ")); }

 private:
  std::array<int64_t, max_rank> dims_{};
  int rank_ = 0;
};

}  // namespace pdegen

// A box of a node grid: the first node and the node count along each spatial axis, slowest axis
// first (z, y, x), the order of a tensor's spatial extents. Tiled inference cuts a domain into
// boxes; problems sample and lift a box, and the fields writer stores one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace pdegen {

struct GridBox {
  std::vector<int64_t> first, count;

  int dims() const { return static_cast<int>(count.size()); }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t c : count) n *= c;
    return n;
  }
  // The box at `first` relative to `origin` (a box that contains it).
  GridBox relative_to(const GridBox& origin) const {
    GridBox b = *this;
    for (std::size_t a = 0; a < first.size(); ++a) b.first[a] -= origin.first[a];
    return b;
  }
  bool operator==(const GridBox&) const = default;
};

}  // namespace pdegen

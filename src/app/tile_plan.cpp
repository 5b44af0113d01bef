// The tile geometry (see tile_plan.hpp).
#include "app/tile_plan.hpp"

#include <algorithm>

#include "core/error.hpp"

namespace pdegen::app {

TilePlan::TilePlan(std::vector<int64_t> domain, int64_t tile, int64_t halo, int64_t align)
    : domain_(std::move(domain)), tile_(tile), halo_(halo) {
  PDEGEN_CHECK(align >= 1 && tile >= 1 && tile % align == 0 && halo >= 0 && halo % align == 0,
               "tiles of {} nodes with a halo of {} at alignment {}", tile, halo, align);
  for (int64_t n : domain_) {
    PDEGEN_CHECK(n >= 1 && n % align == 0, "a domain of {} nodes at alignment {}", n, align);
    const int64_t count = (n + tile - 1) / tile;
    tiles_.push_back(count);
    window_.push_back(count == 1 ? n : std::min(n, tile + 2 * halo));
    size_ *= count;
  }
}

Tile TilePlan::at(int64_t i) const {
  PDEGEN_CHECK(i >= 0 && i < size_, "tile {} of {}", i, size_);
  Tile t;
  const size_t dims = domain_.size();
  t.interior.first.resize(dims);
  t.interior.count.resize(dims);
  t.window = t.interior;
  for (size_t a = dims; a-- > 0;) {  // x fastest
    const int64_t k = i % tiles_[a], n = domain_[a];
    i /= tiles_[a];
    t.interior.first[a] = k * tile_;
    t.interior.count[a] = std::min(n, (k + 1) * tile_) - k * tile_;
    // Shifted inward at the edges: the window keeps its extent and stays inside the domain.
    t.window.first[a] = std::clamp(k * tile_ - halo_, int64_t{0}, n - window_[a]);
    t.window.count[a] = window_[a];
  }
  return t;
}

}  // namespace pdegen::app

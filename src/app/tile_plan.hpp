// How tiled inference cuts a grid: tiles of `tile` interior nodes per axis (the last one shorter),
// each seen by the network through a window of the interior plus `halo` nodes on either side. A
// window never leaves the domain: at an edge it is shifted inward instead (so it holds the true
// boundary, where the convolutions zero-pad exactly as on the whole domain, and every window has the
// same extent, so tiles batch). Every window starts and ends on a multiple of `align`, the network's
// down-sampling factor, so its pooling grids are the whole domain's.
#pragma once

#include <cstdint>
#include <vector>

#include "core/grid_box.hpp"

namespace pdegen::app {

struct Tile {
  GridBox interior;  // the nodes kept from this tile
  GridBox window;    // the nodes the network sees: the interior and its halo, inside the domain
};

class TilePlan {
 public:
  // `domain`: nodes per axis, slowest first; `tile`, `halo` and every domain extent are multiples of
  // `align` (checked).
  TilePlan(std::vector<int64_t> domain, int64_t tile, int64_t halo, int64_t align);

  int64_t size() const { return size_; }
  Tile at(int64_t i) const;  // tile i, x fastest
  // The extent of every window: tile + 2 halo per axis, at most the domain's.
  const std::vector<int64_t>& window() const { return window_; }
  const std::vector<int64_t>& tiles_per_axis() const { return tiles_; }
  int64_t tile() const { return tile_; }
  int64_t halo() const { return halo_; }

 private:
  std::vector<int64_t> domain_, tiles_, window_;
  int64_t tile_, halo_, size_ = 1;
};

// n rounded up to a multiple of align.
inline int64_t round_up(int64_t n, int64_t align) { return (n + align - 1) / align * align; }

}  // namespace pdegen::app

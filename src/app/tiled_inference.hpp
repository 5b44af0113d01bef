// Tiled inference: a trained generator on a domain too large for its activations, tile by tile
// (tile_plan.hpp), several tiles per forward, keeping each tile's interior and lifting it with the
// problem's box lift. With a halo of at least the network's receptive field (nn/network_plan.hpp,
// ReceptiveField) the result equals whole-domain inference to rounding; a smaller halo is allowed
// and its error measured on the first tile batch against full-halo tiles.
//
// Memory: the network's activations for one batch of windows, the batch's input and output, and one
// tile at a time for the caller; the input is sampled per window (Problem::sample_box).
#pragma once

#include <functional>
#include <memory>

#include "app/model.hpp"
#include "app/tile_plan.hpp"
#include "nn/network_plan.hpp"
#include "parallel/communicator.hpp"
#include "physics/problem.hpp"

namespace pdegen::app {

struct TileRequest {
  int64_t tile = 0;   // interior nodes per axis (a multiple of the network's alignment)
  int64_t halo = -1;  // nodes on each side, rounded up to the alignment; -1: the receptive field's
  int64_t batch = 1;  // tiles per forward
};

// What a halo below the receptive field costs: the kept interiors of the first batch against the
// same tiles with the full halo, summed over this rank's tiles (combine() over the ranks).
struct HaloCost {
  int64_t tiles = 0;
  double max_abs = 0, sum_sq_diff = 0, sum_sq = 0;
  double rel_l2() const;
  HaloCost combine(const Communicator& comm) const;
};

class TiledPredictor {
 public:
  // Tiles of `problem`'s grid for the network of `config`, whose plan on the whole grid is `whole`,
  // with `weights`' parameters (a model of that network on any grid). Throws UserError when the
  // result could not equal whole-domain inference (an unbounded receptive field: instance norm), the
  // problem has no boxes, or the tile is not a multiple of the alignment.
  TiledPredictor(const NetworkConfig& config, const NetworkPlan& whole, const Problem& problem,
                 Model& weights, const TileRequest& request, DType precision);
  ~TiledPredictor();

  const TilePlan& plan() const { return plan_; }
  int64_t alignment() const { return align_; }
  int64_t receptive_halo() const { return receptive_halo_; }
  bool halo_is_short() const { return plan_.halo() < receptive_halo_; }
  double network_seconds() const { return network_seconds_; }

  // A tile's kept interior: the sample's position in `indices`, the interior box, the lifted
  // prediction [1, 1, box...] and the input [1, c, box...], on the host.
  using Sink =
      std::function<void(int64_t sample, const GridBox& interior, const Tensor& u, const Tensor& input)>;
  // Items [items.begin, items.end) of samples x tiles (item = sample * plan().size() + tile) of the
  // samples with global `indices`. Returns the first batch's halo cost when the halo is short.
  HaloCost run(uint64_t seed, const std::vector<uint64_t>& indices, Share items, const Sink& sink);

 private:
  struct Window;  // a network for one window extent, with its tile plan
  // The network's output for the windows of `items` (padded to `rows` by repeating the last).
  Tensor forward(Window& w, uint64_t seed, const std::vector<uint64_t>& indices, int64_t first, int64_t last,
                 int64_t rows, Tensor& input);
  HaloCost measure(uint64_t seed, const std::vector<uint64_t>& indices, int64_t first, int64_t last,
                   const std::vector<Tensor>& kept);

  const NetworkConfig& config_;
  const Problem& problem_;
  Model& weights_;
  DType precision_;
  int64_t align_ = 1, receptive_halo_ = 0, batch_ = 1;
  TilePlan plan_;
  std::unique_ptr<Window> window_;
  double network_seconds_ = 0;
};

// Row `row` of a plain fp32 host tensor [n, c, grid...] on `box` (relative to the grid's first node),
// as [1, c, box...].
Tensor crop(const Tensor& t, int64_t row, const GridBox& box);

}  // namespace pdegen::app

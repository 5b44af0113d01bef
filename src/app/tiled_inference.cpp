// Tiled inference (see tiled_inference.hpp).
#include "app/tiled_inference.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/allocator.hpp"
#include "core/timer.hpp"
#include "nn/network_factory.hpp"

namespace pdegen::app {

struct TiledPredictor::Window {
  TilePlan plan;
  std::unique_ptr<Model> model;
};

namespace {

std::vector<int64_t> spatial_extents(const Shape& per_sample) {
  std::vector<int64_t> e;
  for (int i = 1; i < per_sample.rank(); ++i) e.push_back(per_sample[i]);
  return e;
}

// The network's down-sampling factor: how many input nodes its coarsest tensor's node spacing spans.
int64_t alignment_of(const NetworkPlan& plan) {
  int64_t a = 1;
  for (const PlanLayer& l : plan.layers)
    a = std::max(a, plan.input[plan.input.rank() - 1] / l.out[l.out.rank() - 1]);
  return a;
}

// The tile plan of `request`, or UserError saying why tiles could not equal the whole domain.
TilePlan checked_plan(const NetworkPlan& whole, const Problem& problem, const TileRequest& request,
                      int64_t align, int64_t receptive_halo) {
  if (!problem.has_boxes())
    throw UserError(fmt::format(
        "--tile: {} cannot be cut into tiles (its input or its boundary lift needs the whole domain); "
        "run it with --tile 0",
        problem.name()));
  if (!receptive_field(whole).bounded)
    throw UserError(
        "--tile: the network normalises each sample over all its nodes (network.norm: instance), so no "
        "tile's output can equal the whole domain's; tiled inference needs network.norm batch or none "
        "(or run with --tile 0)");
  if (request.tile < 1 || request.tile % align != 0) {
    const int64_t below = request.tile / align * align, above = below + align;
    throw UserError(fmt::format(
        "--tile {} is not a multiple of {}, the network's down-sampling factor (2^(network.depth - 1)): "
        "tiles must start on nodes of the coarsest level; use {}",
        request.tile, align, below > 0 ? fmt::format("{} or {}", below, above) : fmt::format("{}", above)));
  }
  PDEGEN_CHECK(request.batch >= 1, "tile batch {}", request.batch);
  const int64_t halo = request.halo < 0 ? receptive_halo : request.halo;
  return TilePlan(spatial_extents(problem.sample_shape()), request.tile, round_up(halo, align), align);
}

}  // namespace

Tensor crop(const Tensor& t, int64_t row, const GridBox& box) {
  PDEGEN_CHECK(
      t.is_plain() && t.dtype() == DType::f32 && t.device() == Device::cpu && t.rank() == box.dims() + 2,
      "crop of a {}D box from {}", box.dims(), t.describe());
  const int dims = box.dims();
  const int64_t channels = t.dim(1), spatial = t.shape().spatial(), nx = box.count.back();
  Shape shape{1, channels};
  for (int64_t c : box.count) shape.push_back(c);
  Tensor out = Tensor::empty(shape);
  const int64_t lines = box.numel() / nx;
  const float* src = t.data<float>() + row * channels * spatial;
  float* dst = out.data<float>();
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t line = 0; line < lines; ++line) {
      // The line's node along each axis but x, fastest (y) first.
      int64_t offset = box.first.back(), stride = t.dim(t.rank() - 1), rest = line;
      for (int a = dims - 2; a >= 0; --a) {
        offset += (box.first[a] + rest % box.count[a]) * stride;
        rest /= box.count[a];
        stride *= t.dim(a + 2);
      }
      std::copy_n(src + c * spatial + offset, nx, dst + (c * lines + line) * nx);
    }
  return out;
}

double HaloCost::rel_l2() const { return sum_sq > 0 ? std::sqrt(sum_sq_diff / sum_sq) : 0.0; }

HaloCost HaloCost::combine(const Communicator& comm) const {
  HaloCost c;
  c.tiles = static_cast<int64_t>(comm.sum(static_cast<double>(tiles)));
  c.max_abs = comm.max(max_abs);
  c.sum_sq_diff = comm.sum(sum_sq_diff);
  c.sum_sq = comm.sum(sum_sq);
  return c;
}

TiledPredictor::TiledPredictor(const NetworkConfig& config, const NetworkPlan& whole, const Problem& problem,
                               Model& weights, const TileRequest& request, DType precision)
    : config_(config),
      problem_(problem),
      weights_(weights),
      precision_(precision),
      align_(alignment_of(whole)),
      receptive_halo_(receptive_field(whole).halo()),
      batch_(request.batch),
      plan_(checked_plan(whole, problem, request, align_, receptive_halo_)) {
  window_ = std::make_unique<Window>(Window{plan_, nullptr});
  Shape input{problem_.input_shape()[0]};
  for (int64_t e : plan_.window()) input.push_back(e);
  window_->model =
      build_model(plan_network(config_, input, 1, batch_), 0, weights_.registry.flat_values().device());
  copy_model_state(weights_, *window_->model);
}

TiledPredictor::~TiledPredictor() = default;

Tensor TiledPredictor::forward(Window& w, uint64_t seed, const std::vector<uint64_t>& indices, int64_t first,
                               int64_t last, int64_t rows, Tensor& input) {
  Shape shape{rows, problem_.input_shape()[0]};
  for (int64_t e : w.plan.window()) shape.push_back(e);
  if (!(input.defined() && input.shape() == shape)) input = Tensor::empty(shape);
  const int64_t tiles = w.plan.size();
  for (int64_t r = 0; r < rows; ++r) {
    Tensor row = input.slice_batch(r, r + 1);
    if (first + r < last)
      problem_.sample_box(seed, indices[static_cast<size_t>((first + r) / tiles)],
                          w.plan.at((first + r) % tiles).window, row);
    else  // padding, so that every forward has the same shape and reuses the same memory
      row.copy_from(input.slice_batch(r - 1, r));
  }
  Timer timer;
  const Device device = w.model->registry.flat_values().device();
  const Tensor y = w.model->net->forward(to_dtype(input.to(device), precision_), Mode::eval);
  Tensor out = to_plain(to_dtype(y, DType::f32).to(Device::cpu));
  network_seconds_ += timer.seconds();
  return out;
}

HaloCost TiledPredictor::run(uint64_t seed, const std::vector<uint64_t>& indices, Share items,
                             const Sink& sink) {
  HaloCost cost;
  const int64_t rows = std::min(batch_, items.count()), tiles = plan_.size();
  Tensor input;
  for (int64_t first = items.begin; first < items.end; first += rows) {
    const int64_t last = std::min(items.end, first + rows);
    const Tensor y = forward(*window_, seed, indices, first, last, rows, input);
    const bool measuring = first == items.begin && halo_is_short();
    std::vector<Tensor> kept;
    for (int64_t item = first; item < last; ++item) {
      const Tile t = plan_.at(item % tiles);
      const GridBox inner = t.interior.relative_to(t.window);
      const Tensor in = crop(input, item - first, inner);
      const Tensor u = problem_.lift_box(crop(y, item - first, inner), in, t.interior);
      sink(item / tiles, t.interior, u, in);
      if (measuring) kept.push_back(u);
    }
    if (measuring) cost = measure(seed, indices, first, last, kept);
  }
  return cost;
}

HaloCost TiledPredictor::measure(uint64_t seed, const std::vector<uint64_t>& indices, int64_t first,
                                 int64_t last, const std::vector<Tensor>& kept) {
  const double seconds_before = network_seconds_;  // the check is not the prediction's cost
  HaloCost c;
  {
    Window full{TilePlan(spatial_extents(problem_.sample_shape()), plan_.tile(),
                         round_up(receptive_halo_, align_), align_),
                nullptr};
    Shape input_shape{problem_.input_shape()[0]};
    for (int64_t e : full.plan.window()) input_shape.push_back(e);
    full.model = build_model(plan_network(config_, input_shape, 1, last - first), 0,
                             weights_.registry.flat_values().device());
    copy_model_state(weights_, *full.model);
    Tensor input;
    const Tensor y = forward(full, seed, indices, first, last, last - first, input);
    for (int64_t item = first; item < last; ++item) {
      const Tile t = full.plan.at(item % full.plan.size());
      const GridBox inner = t.interior.relative_to(t.window);
      const Tensor in = crop(input, item - first, inner);
      const Tensor u = problem_.lift_box(crop(y, item - first, inner), in, t.interior);
      const float *a = kept[static_cast<size_t>(item - first)].data<float>(), *b = u.data<float>();
      for (int64_t i = 0; i < u.numel(); ++i) {
        const double d = static_cast<double>(a[i]) - b[i];
        c.max_abs = std::max(c.max_abs, std::abs(d));
        c.sum_sq_diff += d * d;
        c.sum_sq += static_cast<double>(b[i]) * b[i];
      }
    }
    c.tiles = last - first;
  }
  // The full-halo network's blocks fit no later batch: give them back instead of keeping them cached.
  CachingAllocator::host().empty_cache();
  network_seconds_ = seconds_before;
  return c;
}

}  // namespace pdegen::app

// Tiled inference (app/tiled_inference.hpp) against whole-domain inference, on grids that also fit
// whole: U-Nets with random weights (tanh, so no dead unit hides a dependence) on poisson2d 128^2 in
// tiles of 32 and poisson3d 32^3 in tiles of 16. With the receptive field's halo every node equals
// the whole-domain prediction to rounding; with a short halo the result differs measurably and the
// first batch's measured cost says so. Also: the tile geometry, the KL sampler's boxes, the box lift,
// and the refusals.
#include <algorithm>
#include <cmath>
#include <memory>

#include "app/evaluation.hpp"
#include "app/tiled_inference.hpp"
#include "nn/network_factory.hpp"
#include "testing.hpp"

using namespace pdegen;
using namespace pdegen::app;

namespace {

constexpr uint64_t seed = 5;

struct Setup {
  NetworkConfig net;
  NetworkPlan plan;
  std::unique_ptr<Problem> problem;
  std::unique_ptr<Model> model;
};

Setup make_setup(PdeKind pde, int n, int depth, int convs, NormKind norm = NormKind::none) {
  Setup s;
  ProblemConfig config;
  config.pde = pde;
  config.resolution = n;
  config.poisson.kl_modes = 24;
  s.problem = make_problem(config, EvaluationConfig{});
  s.net.depth = depth;
  s.net.base_channels = 4;
  s.net.convs_per_level = convs;
  s.net.activation = ActivationKind::tanh;
  s.net.norm = norm;
  s.plan = plan_network(s.net, s.problem->input_shape(), 1, 2);
  s.model = build_model(s.plan, 3);
  return s;
}

// Writes [1, c, box...] into row `row` of [n, c, grid...] at `box` (the inverse of crop).
void paste(Tensor& t, int64_t row, const GridBox& box, const Tensor& tile) {
  const int dims = box.dims();
  const int64_t channels = t.dim(1), spatial = t.shape().spatial(), nx = box.count.back();
  const int64_t lines = box.numel() / nx;
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t line = 0; line < lines; ++line) {
      int64_t offset = box.first.back(), stride = t.dim(t.rank() - 1), rest = line;
      for (int a = dims - 2; a >= 0; --a) {
        offset += (box.first[a] + rest % box.count[a]) * stride;
        rest /= box.count[a];
        stride *= t.dim(a + 2);
      }
      std::copy_n(tile.data<float>() + (c * lines + line) * nx, nx,
                  t.data<float>() + (row * channels + c) * spatial + offset);
    }
}

struct Tiled {
  Tensor u, input, visits;
  HaloCost cost;
  int64_t window = 0, domain = 0;
};

Tiled run_tiled(Setup& s, const std::vector<uint64_t>& indices, const TileRequest& request) {
  TiledPredictor p(s.net, s.plan, *s.problem, *s.model, request, DType::f32);
  const int64_t n = static_cast<int64_t>(indices.size());
  Tiled out{Tensor::zeros(s.problem->batch_shape(n)),
            Tensor::zeros(s.problem->input_batch_shape(n)),
            Tensor::zeros(s.problem->batch_shape(n)),
            {},
            p.plan().window().back(),
            s.problem->sample_shape()[1]};
  const auto sink = [&](int64_t e, const GridBox& box, const Tensor& u, const Tensor& input) {
    paste(out.u, e, box, u);
    paste(out.input, e, box, input);
    // Each node must be kept by exactly one tile.
    Tensor seen = crop(out.visits, e, box);
    for (int64_t i = 0; i < seen.numel(); ++i) seen.data<float>()[i] += 1.0f;
    paste(out.visits, e, box, seen);
  };
  out.cost = p.run(seed, indices, Share{0, n * p.plan().size()}, sink);
  return out;
}

struct Whole {
  Tensor u, input;
};

Whole run_whole(Setup& s, const std::vector<uint64_t>& indices) {
  Whole w;
  s.problem->sample(seed, indices, w.input);
  w.u = predict(*s.model, *s.problem, w.input, DType::f32, 1);
  return w;
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (int64_t i = 0; i < t.numel(); ++i) m = std::max(m, std::abs(static_cast<double>(t.data<float>()[i])));
  return m;
}

double max_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  double m = 0;
  for (int64_t i = 0; i < a.numel(); ++i)
    m = std::max(m, std::abs(static_cast<double>(a.data<float>()[i]) - b.data<float>()[i]));
  return m;
}

// Tiled with the auto halo equals whole; a halo of 0 does not, and its measured cost shows it.
void check_tiled_equals_whole(Setup& s, int64_t tile, int64_t batch) {
  const std::vector<uint64_t> indices{predict_index_base, predict_index_base + 1};
  const Whole whole = run_whole(s, indices);
  const Tiled tiled = run_tiled(s, indices, {tile, -1, batch});
  CAPTURE(receptive_field(s.plan).halo());
  REQUIRE(tiled.window < tiled.domain);  // the windows really are cut from the domain
  const float* visits = tiled.visits.data<float>();
  CHECK(std::all_of(visits, visits + tiled.visits.numel(), [](float v) { return v == 1.0f; }));
  CHECK(max_diff(tiled.input, whole.input) == 0.0);
  const double scale = std::max(1.0, max_abs(whole.u)), diff = max_diff(tiled.u, whole.u);
  CAPTURE(diff);
  CHECK(diff <= 1e-5 * scale);
  CHECK(tiled.cost.tiles == 0);  // nothing measured: the halo is full

  const Tiled short_halo = run_tiled(s, indices, {tile, 0, batch});
  const double short_diff = max_diff(short_halo.u, whole.u);
  CAPTURE(short_diff);
  CHECK(short_diff > 1e-3 * scale);
  CHECK(short_halo.cost.tiles == batch);
  CHECK(short_halo.cost.max_abs > 1e-3 * scale);
  CHECK(short_halo.cost.max_abs <= short_diff * (1 + 1e-6));
  CHECK(short_halo.cost.rel_l2() > 0);
}

}  // namespace

TEST_CASE("tiles cover the domain once, windows stay inside it, aligned, with the halo where it exists") {
  const TilePlan plan({40, 128}, 32, 24, 8);
  CHECK(plan.size() == 2 * 4);
  CHECK(plan.window() == std::vector<int64_t>{40, 80});
  std::vector<int> covered(40 * 128, 0);
  for (int64_t i = 0; i < plan.size(); ++i) {
    const Tile t = plan.at(i);
    for (int a = 0; a < 2; ++a) {
      const int64_t lo = t.window.first[a], hi = lo + t.window.count[a], n = a == 0 ? 40 : 128;
      CHECK(lo >= 0);
      CHECK(hi <= n);
      CHECK(lo % 8 == 0);
      CHECK(t.window.count[a] == plan.window()[a]);
      const int64_t i0 = t.interior.first[a], i1 = i0 + t.interior.count[a];
      CHECK((lo == 0 || i0 - lo >= 24));
      CHECK((hi == n || hi - i1 >= 24));
    }
    for (int64_t y = 0; y < t.interior.count[0]; ++y)
      for (int64_t x = 0; x < t.interior.count[1]; ++x)
        ++covered[static_cast<size_t>((t.interior.first[0] + y) * 128 + t.interior.first[1] + x)];
  }
  CHECK(std::all_of(covered.begin(), covered.end(), [](int c) { return c == 1; }));
}

TEST_CASE("the KL sampler's box equals that box of the whole sample, bit for bit") {
  for (PdeKind pde : {PdeKind::poisson2d, PdeKind::poisson3d}) {
    Setup s = make_setup(pde, pde == PdeKind::poisson2d ? 40 : 12, 1, 1);
    const std::vector<uint64_t> one{predict_index_base + 7};
    Tensor whole;
    s.problem->sample(seed, one, whole);
    const GridBox box = pde == PdeKind::poisson2d ? GridBox{{8, 5}, {20, 31}} : GridBox{{2, 3, 4}, {7, 8, 5}};
    Shape shape{1, 1};
    for (int64_t c : box.count) shape.push_back(c);
    Tensor part = Tensor::empty(shape);
    s.problem->sample_box(seed, one[0], box, part);
    CHECK(max_diff(part, crop(whole, 0, box)) == 0.0);
  }
}

TEST_CASE("the box lift equals that box of the whole lift") {
  Setup s = make_setup(PdeKind::poisson2d, 16, 1, 1);
  Tensor v = Tensor::empty(s.problem->batch_shape(1)), input = Tensor::empty(s.problem->batch_shape(1));
  for (int64_t i = 0; i < v.numel(); ++i) v.data<float>()[i] = 0.01f * static_cast<float>(i % 37);
  const Tensor u = s.problem->lift(v, input);
  for (const GridBox& box : {GridBox{{0, 0}, {8, 8}}, GridBox{{4, 4}, {8, 8}}, GridBox{{8, 8}, {8, 8}},
                             GridBox{{0, 0}, {16, 16}}}) {
    const Tensor part = s.problem->lift_box(crop(v, 0, box), crop(input, 0, box), box);
    CHECK(max_diff(part, crop(u, 0, box)) == 0.0);
  }
}

TEST_CASE("poisson2d 128^2 in tiles of 32 equals the whole domain: a short halo does not") {
  Setup s = make_setup(PdeKind::poisson2d, 128, 3, 2);
  check_tiled_equals_whole(s, 32, 3);
}

TEST_CASE("poisson2d with batch norm (running statistics: node-wise) in tiles equals the whole domain") {
  Setup s = make_setup(PdeKind::poisson2d, 128, 3, 2, NormKind::batch);
  check_tiled_equals_whole(s, 32, 4);
}

TEST_CASE("poisson3d 32^3 in tiles of 16 equals the whole domain: a short halo does not") {
  Setup s = make_setup(PdeKind::poisson3d, 32, 2, 1);
  check_tiled_equals_whole(s, 16, 2);
}

TEST_CASE("tiling refuses instance norm, unaligned tiles and problems without boxes") {
  Setup s = make_setup(PdeKind::poisson2d, 32, 3, 1, NormKind::instance);
  CHECK_THROWS_AS(TiledPredictor(s.net, s.plan, *s.problem, *s.model, {16, -1, 1}, DType::f32), UserError);
  Setup ok = make_setup(PdeKind::poisson2d, 32, 3, 1);
  CHECK_THROWS_WITH_AS(TiledPredictor(ok.net, ok.plan, *ok.problem, *ok.model, {10, -1, 1}, DType::f32),
                       doctest::Contains("not a multiple of 4"), UserError);
  ProblemConfig burgers;
  burgers.pde = PdeKind::burgers1d;
  burgers.resolution = 16;
  burgers.burgers.time_resolution = 8;
  burgers.loss = LossKind::residual;
  Setup b;
  b.problem = make_problem(burgers, EvaluationConfig{});
  b.net.depth = 2;
  b.net.base_channels = 4;
  b.plan = plan_network(b.net, b.problem->input_shape(), 1, 1);
  b.model = build_model(b.plan, 3);
  CHECK_THROWS_AS(TiledPredictor(b.net, b.plan, *b.problem, *b.model, {4, -1, 1}, DType::f32), UserError);
}

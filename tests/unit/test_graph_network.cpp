// The graph executor on a small hand-written plan that no U-Net has: one tensor read by three layers
// and a three-way concat,
//     x -> conv0 -> act0 -+-> conv_a -> act_a -+
//                         +-> conv_b ----------+-> concat(act0, act_a, conv_b) -> head
// The plan's shapes, parameters and memory model against hand counts, and the parameter gradients
// against central differences through the whole graph: a dropped or misrouted gradient (act0's three
// contributions not summed, the concat's parts swapped) changes conv0's, conv_a's or conv_b's
// gradients by O(1).
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "config/choices.hpp"
#include "network_testing.hpp"
#include "nn/network_factory.hpp"
#include "testing.hpp"

using namespace pdegen;
using namespace pdegen::testing;

namespace {

struct Channels {
  int64_t c0, a, b;  // conv0's, conv_a's and conv_b's outputs
};

// The graph above on a 1-channel 8x8 field (or 4x8x8 in 3D).
NetworkPlan diamond_plan(const Channels& c, ActivationKind act, const Shape& input = Shape{1, 8, 8},
                         int64_t batch = 2) {
  NetworkPlan plan;
  PlanBuilder b(plan, input, batch);
  plan.description = "diamond test graph";
  const int conv0 = b.conv("conv0", 0, PlanLayer::network_input, c.c0, 3, 1, true);
  const int act0 = b.activation("act0", 0, conv0, act);
  const int conv_a = b.conv("conv_a", 0, act0, c.a, 3, 1, true);
  const int act_a = b.activation("act_a", 0, conv_a, act);
  const int conv_b = b.conv("conv_b", 0, act0, c.b, 3, 1, true);
  const int cat = b.concat("concat", 0, {act0, act_a, conv_b});
  b.conv("head", 0, cat, 1, 1, 1, true);
  b.finish();
  return plan;
}

// Plain 3x3 convolutions 4 -> 16 and 4 -> 8 (plain concat, 28 channels) and 16 -> 16, 16 (every
// tensor channel-blocked where the CPU blocks by 16, a 48-channel blocked concat).
const Channels mixed{4, 16, 8}, blocked{16, 16, 16};

}  // namespace

TEST_CASE("a hand-written plan with a three-way concat has the hand-counted shapes and readers") {
  const NetworkPlan plan = diamond_plan(mixed, ActivationKind::relu);
  REQUIRE(plan.layers.size() == 7);
  CHECK(plan.description == "diamond test graph");
  CHECK(plan.output == Shape{1, 8, 8});
  CHECK(plan.layers[5].inputs == std::vector<int>{1, 3, 4});
  CHECK(plan.layers[5].out == Shape{28, 8, 8});
  CHECK(plan.layers[4].in == Shape{4, 8, 8});
  CHECK_FALSE(plan.layers[0].input_needs_grad);
  CHECK(plan.layers[1].input_needs_grad);
  const auto readers = plan.readers();
  CHECK(readers[1] == std::vector<int>{2, 4, 5});
  CHECK(readers[3] == std::vector<int>{5});
  CHECK(readers[6].empty());
  // conv0 1->4 (36+4), conv_a 4->16 (576+16), conv_b 4->8 (288+8), head 28->1 (28+1).
  CHECK(plan.parameters == 40 + 592 + 296 + 29);
  const auto table = plan.layer_table();
  REQUIRE(table.size() == 8);  // the header and one row per layer
  CHECK(table[6].find("[8, 8, 8]+#1+#3") != std::string::npos);
  CHECK(table[5].find("#1") != std::string::npos);  // conv_b reads act0, not conv_a before it
}

TEST_CASE("the memory model keeps each tensor's gradient once, summed over its readers") {
  // Per sample on 8x8: input 64, conv0 256, act0 256, conv_a 1024, act_a 1024, conv_b 512,
  // concat 1792, head 64: 4992 kept at the end of forward. Backward (kept + dy + dx + waiting):
  // head 4992 + 64 + 1792; concat 4928 + 1792 + 1792, the worst point: 8512; then conv_b
  // 3136 + 512 + 256 + (act0's 256 and act_a's 1024 waiting) = 5184, and less after.
  const NetworkPlan plan = diamond_plan(mixed, ActivationKind::relu);
  CHECK(plan.peak_activation_bytes == 8512 * 2 * 4);
}

TEST_CASE("the plan builder refuses a layer reading a later one, a dangling layer and a one-way concat") {
  NetworkPlan plan;
  PlanBuilder b(plan, Shape{1, 8, 8}, 1);
  const int conv0 = b.conv("conv0", 0, PlanLayer::network_input, 4, 3, 1, true);
  CHECK_THROWS_AS(b.activation("act", 0, conv0 + 1, ActivationKind::relu), Error);
  CHECK_THROWS_AS(b.concat("cat", 0, {conv0}), Error);
  b.conv("dangling", 0, conv0, 4, 3, 1, true);
  b.conv("head", 0, conv0, 1, 1, 1, true);
  CHECK_THROWS_WITH_AS(b.finish(), doctest::Contains("nothing reads the output of layer 'dangling'"), Error);
}

TEST_CASE("the executor's forward has the plan's output shape and its FLOPs add up to the plan's") {
  for (const Channels& c : {mixed, blocked}) {
    Model m(diamond_plan(c, ActivationKind::relu, Shape{1, 8, 8}, 3));
    CHECK(m.registry.count() == m.plan.parameters);
    CHECK(m.registry.params().front().name == "conv0.weight");
    CHECK(m.registry.params().back().name == "head.bias");
    const Shape in = batched(m.plan.input, 3);
    for (Mode mode : {Mode::train, Mode::eval}) {
      const Tensor y = m.net->forward(tensor_from(random_vec(static_cast<size_t>(in.numel()), 1), in), mode);
      CHECK(y.shape() == in);
      CHECK(y.is_plain());
      for (double v : values_of(y)) REQUIRE(std::isfinite(v));
    }
    const Flops f = m.net->flops(3);
    CHECK(f.total() == doctest::Approx(m.plan.flops_per_step).epsilon(1e-12));
    CHECK(f.forward == doctest::Approx(3 * m.plan.forward_flops_per_sample).epsilon(1e-12));
  }
}

TEST_CASE(
    "parameter gradients through a tensor read by three layers and a three-way concat match central "
    "differences") {
  // tanh: smooth, every activation out of place on the forward; ReLU: act_a in place on conv_a's
  // output, both keeping sign bits, act0's output read by two convs and the concat.
  for (ActivationKind act : {ActivationKind::tanh, ActivationKind::relu})
    for (const Channels& c : {mixed, blocked}) {
      CAPTURE(name_of(act));
      CAPTURE(c.c0);
      Model m(diamond_plan(c, act));
      check_parameter_gradients(m, 6);
    }
  // The same graph in 3D.
  Model m3(diamond_plan(mixed, ActivationKind::tanh, Shape{1, 4, 8, 8}, 1));
  check_parameter_gradients(m3, 4);
}

TEST_CASE("backward runs once per train forward, through the graph as through a chain") {
  Model m(diamond_plan(mixed, ActivationKind::relu));
  const Shape in = batched(m.plan.input, 2);
  const Tensor x = tensor_from(random_vec(static_cast<size_t>(in.numel()), 31), in);
  const Tensor dy = tensor_from(random_vec(static_cast<size_t>(in.numel()), 32), in);
  CHECK_THROWS_WITH_AS(m.net->backward(dy), doctest::Contains("without a train-mode forward"), Error);
  m.registry.zero_grads();
  m.net->forward(x, Mode::train);
  m.net->backward(dy);
  const Vec once = values_of(m.registry.flat_grads());
  CHECK_THROWS_AS(m.net->backward(dy), Error);
  // The caller's dy is read, never overwritten, and a second step adds the same gradients.
  CHECK(values_of(dy) == values_of(tensor_from(random_vec(static_cast<size_t>(in.numel()), 32), in)));
  m.net->forward(x, Mode::train);
  m.net->backward(dy);
  const Vec twice = values_of(m.registry.flat_grads());
  Vec doubled(once.size());
  for (size_t i = 0; i < once.size(); ++i) doubled[i] = 2 * once[i];
  CHECK(rel_max_error(twice, doubled) < 1e-6);
}

// The FC-DenseNet plan run by the graph executor: the channel counts of FC-DenseNet103 as its paper
// tabulates them (Jegou et al. 2017, Table 2), the parameters the plan registers, the presets'
// sizes, and backward wired right: the gradient of every parameter tensor against central
// differences of the fp32 forward for every norm, down-sampling and up-sampling choice, 2D and 3D.
#include <string>

#include "config/choices.hpp"
#include "config/deck.hpp"
#include "core/error.hpp"
#include "network_testing.hpp"
#include "nn/fc_densenet_plan.hpp"

using namespace pdegen;
using namespace pdegen::testing;

namespace {

NetworkConfig tiny_densenet(NormKind norm, DownsampleKind down, UpsampleKind up) {
  NetworkConfig net;
  net.type = NetworkKind::fc_densenet;
  net.preset = DenseNetPreset::custom;
  net.growth_rate = 4;
  net.block_layers = {2, 1, 2};  // a block of one layer sends that layer's output up alone
  net.first_channels = 6;
  net.norm = norm;
  net.downsample = down;
  net.upsample = up;
  net.activation = ActivationKind::tanh;  // smooth, so central differences see no kinks
  return net;
}

NetworkConfig preset(DenseNetPreset p) {
  Deck d = parse_deck("output:\n  dir: unused\n", "test",
                      {"problem.pde=poisson2d", "problem.resolution=64", "network.type=fc_densenet",
                       "network.norm=batch", std::string("network.preset=") + std::string(name_of(p))});
  return d.network;
}

// Output channels of the layer called `name`.
int64_t channels_of(const NetworkPlan& plan, const std::string& name) {
  for (const PlanLayer& l : plan.layers)
    if (l.name == name) return l.out[0];
  FAIL("no layer ", name);
  return -1;
}

}  // namespace

TEST_CASE("FC-DenseNet103 has the paper's channel counts at every stage") {
  const NetworkPlan plan = plan_fc_densenet(preset(DenseNetPreset::fc103), Shape{1, 64, 64}, 1, 2);
  CHECK(channels_of(plan, "first") == 48);
  const int64_t down[] = {112, 192, 304, 464, 656};  // 48 + 4 x 16, + 5 x 16, ...
  for (int i = 0; i < 5; ++i) CHECK(channels_of(plan, fmt::format("down{}.out", i)) == down[i]);
  CHECK(channels_of(plan, "bottleneck.new") == 240);  // 15 x 16 go up, not the 896 of the whole block
  const int64_t up[] = {256, 80, 112, 160, 192};  // up0 whole (80 up + 112 skip + 4 x 16), then new features
  CHECK(channels_of(plan, "up0.out") == up[0]);
  for (int i = 1; i < 5; ++i) CHECK(channels_of(plan, fmt::format("up{}.new", i)) == up[i]);
  CHECK(channels_of(plan, "up4.in") == 240 + 656);  // transition up of the bottleneck + skip
  CHECK(plan.output == Shape{1, 64, 64});
  CHECK(plan.description ==
        "FC-DenseNet (2D, preset fc103, growth 16, block layers 4 5 7 10 12 15, norm batch)");
}

TEST_CASE("FC-DenseNet presets: sizes, and the grid they need") {
  const NetworkPlan p56 = plan_fc_densenet(preset(DenseNetPreset::fc56), Shape{1, 64, 64}, 1, 1);
  const NetworkPlan p67 = plan_fc_densenet(preset(DenseNetPreset::fc67), Shape{1, 64, 64}, 1, 1);
  const NetworkPlan p103 = plan_fc_densenet(preset(DenseNetPreset::fc103), Shape{1, 64, 64}, 1, 1);
  // The paper's 1.5 M, 3.5 M and 9.4 M (3 input channels, 11 classes, 3x3 transitions up): ours take
  // 1 channel and 2x2 transposed convolutions, hence somewhat fewer (1.31 M, 3.30 M, 8.62 M).
  CHECK(p56.parameters > 1'000'000);
  CHECK(p56.parameters < 1'500'000);
  CHECK(p67.parameters > 2'500'000);
  CHECK(p67.parameters < 3'500'000);
  CHECK(p103.parameters > 8'000'000);
  CHECK(p103.parameters < 9'400'000);
  // Layers with weights: 56, 67, 103 (the name), counting first conv, dense layers, transitions down
  // and up, and the head.
  for (const auto& [plan, layers] : {std::pair{&p56, 56}, {&p67, 67}, {&p103, 103}}) {
    int weighted = 0;
    for (const PlanLayer& l : plan->layers)
      weighted += l.op == LayerOp::conv || l.op == LayerOp::conv_transpose;
    CHECK(weighted == layers);
  }
  CHECK_THROWS_WITH_AS(plan_fc_densenet(preset(DenseNetPreset::fc56), Shape{1, 48, 48}, 1, 1),
                       doctest::Contains("not divisible by 2^5 = 32"), UserError);
}

TEST_CASE("the built FC-DenseNet registers exactly the plan's parameters, with its names and shapes") {
  for (const NetworkConfig& config :
       {tiny_densenet(NormKind::batch, DownsampleKind::maxpool, UpsampleKind::transposed_conv),
        tiny_densenet(NormKind::none, DownsampleKind::strided_conv, UpsampleKind::resize_conv)}) {
    Model m(config, Shape{1, 16, 16}, 2);
    CAPTURE(m.plan.description);
    CHECK(m.registry.count() == m.plan.parameters);
    const auto expected = expected_parameters(m.plan);
    REQUIRE(m.registry.params().size() == expected.size());
    for (size_t i = 0; i < expected.size(); ++i) {
      CHECK(m.registry.params()[i].name == expected[i].first);
      CHECK(m.registry.params()[i].shape == expected[i].second);
    }
  }
}

TEST_CASE("FC-DenseNet parameter gradients match central differences for every norm and sampling choice") {
  for (NormKind norm : {NormKind::none, NormKind::batch, NormKind::instance})
    for (DownsampleKind down :
         {DownsampleKind::maxpool, DownsampleKind::avgpool, DownsampleKind::strided_conv})
      for (UpsampleKind up : {UpsampleKind::transposed_conv, UpsampleKind::resize_conv})
        check_parameter_gradients(tiny_densenet(norm, down, up), Shape{1, 16, 16}, 2, 1);
}

TEST_CASE("FC-DenseNet parameter gradients in 3D, and with ReLU, match central differences") {
  check_parameter_gradients(
      tiny_densenet(NormKind::batch, DownsampleKind::maxpool, UpsampleKind::transposed_conv),
      Shape{1, 8, 8, 8}, 2, 1);
  NetworkConfig relu = tiny_densenet(NormKind::batch, DownsampleKind::maxpool, UpsampleKind::transposed_conv);
  relu.activation = ActivationKind::relu;
  check_parameter_gradients(relu, Shape{1, 16, 16}, 2, 2);
}

TEST_CASE("fc_densenet deck keys: presets resolve, custom takes its lists, misuse is refused") {
  const std::vector<std::string> base{"problem.pde=poisson2d", "problem.resolution=64",
                                      "network.type=fc_densenet"};
  auto deck = [&](std::vector<std::string> more) {
    more.insert(more.begin(), base.begin(), base.end());
    return parse_deck("output:\n  dir: unused\n", "test", more);
  };
  const Deck fc103 = deck({"network.preset=fc103"});
  CHECK(fc103.network.growth_rate == 16);
  CHECK(fc103.network.block_layers == std::vector<int>{4, 5, 7, 10, 12, 15});
  CHECK(parse_deck(to_yaml(fc103), "resolved") == fc103);
  const Deck custom =
      deck({"network.preset=custom", "network.growth_rate=8", "network.block_layers=[3, 2, 4]"});
  CHECK(custom.network.block_layers == std::vector<int>{3, 2, 4});
  CHECK(parse_deck(to_yaml(custom), "resolved") == custom);
  CHECK_THROWS_WITH_AS(deck({"network.growth_rate=8"}),
                       doctest::Contains("applies only to network preset custom"), UserError);
  CHECK_THROWS_WITH_AS(deck({"network.preset=custom", "network.block_layers=[3, 0]"}),
                       doctest::Contains("'network.block_layers' expects a list of integers"), UserError);
  CHECK_THROWS_WITH_AS(deck({"network.preset=custom", "network.block_layers=[]"}),
                       doctest::Contains("'network.block_layers' expects a list of integers"), UserError);
  CHECK_THROWS_WITH_AS(deck({"network.depth=3"}), doctest::Contains("applies only to network type unet"),
                       UserError);
  CHECK_THROWS_WITH_AS(deck({"multigrid.levels=2", "multigrid.deepen=true"}),
                       doctest::Contains("grows a U-Net"), UserError);
  CHECK_THROWS_WITH_AS(
      plan_fc_densenet(deck({"problem.resolution=48"})),
      doctest::Contains("problem.resolution = 48 is not divisible by 2^(dense blocks - 1) = 32"), UserError);
}

// The U-Net plan run by the graph executor: the network it builds is the plan (parameters, names,
// shapes, FLOPs), its forward has the plan's output shape, and its backward is wired right: the gradient of a
// few dozen parameters of every layer against central differences of the fp32 forward, for every norm,
// down-sampling and up-sampling choice. The layers themselves are tested in their own files; these
// tests catch wiring errors (a skip gradient dropped, a concat in the wrong order, a layer skipped).
#include <algorithm>
#include <cmath>
#include <map>
#include <string>

#include "config/choices.hpp"
#include "mixed_precision_testing.hpp"
#include "network_testing.hpp"
#include "nn/network_factory.hpp"
#include "nn/unet_plan.hpp"
#include "testing.hpp"

using namespace pdegen;
using namespace pdegen::testing;

namespace {

NetworkConfig tiny_network(NormKind norm, DownsampleKind down, UpsampleKind up, int depth = 3, int base = 8) {
  NetworkConfig net;
  net.depth = depth;
  net.base_channels = base;  // 8, 16, 32 channels: plain and channel-blocked levels
  net.norm = norm;
  net.downsample = down;
  net.upsample = up;
  net.activation = ActivationKind::tanh;  // smooth, so central differences see no kinks
  return net;
}

// Every norm / down-sampling / up-sampling combination.
std::vector<NetworkConfig> all_choices() {
  std::vector<NetworkConfig> out;
  for (NormKind norm : {NormKind::none, NormKind::batch, NormKind::instance})
    for (DownsampleKind down :
         {DownsampleKind::maxpool, DownsampleKind::avgpool, DownsampleKind::strided_conv})
      for (UpsampleKind up : {UpsampleKind::transposed_conv, UpsampleKind::resize_conv})
        out.push_back(tiny_network(norm, down, up));
  return out;
}

std::string describe(const NetworkConfig& net) {
  return fmt::format("depth {}, base {}, norm {}, {}, {}", net.depth, net.base_channels, name_of(net.norm),
                     name_of(net.downsample), name_of(net.upsample));
}

}  // namespace

TEST_CASE("the built U-Net registers exactly the plan's parameters, with the plan's names and shapes") {
  std::vector<std::pair<NetworkConfig, Shape>> cases;
  for (const auto& net : all_choices()) cases.emplace_back(net, Shape{1, 16, 16});
  cases.emplace_back(NetworkConfig{}, Shape{1, 64, 64});  // the deck's defaults
  cases.emplace_back(
      tiny_network(NormKind::batch, DownsampleKind::strided_conv, UpsampleKind::resize_conv, 2, 4),
      Shape{1, 8, 8, 8});
  for (const auto& [config, input] : cases) {
    CAPTURE(describe(config));
    Model m(config, input, 2);
    CHECK(m.registry.count() == m.plan.parameters);
    CHECK(m.net->plan().layers.size() == m.plan.layers.size());
    CHECK(m.plan.description == fmt::format("U-Net ({}D, depth {}, base {} channels x2 per level, norm {})",
                                            input.rank() - 1, config.depth, config.base_channels,
                                            name_of(config.norm)));
    const auto expected = expected_parameters(m.plan);
    REQUIRE(m.registry.params().size() == expected.size());
    for (size_t i = 0; i < expected.size(); ++i) {
      CHECK(m.registry.params()[i].name == expected[i].first);
      CHECK(m.registry.params()[i].shape == expected[i].second);
    }
  }
}

TEST_CASE("forward maps a plain [b, 1, H, W] batch to a plain [b, 1, H, W] output, 2D and 3D") {
  const std::vector<std::pair<NetworkConfig, Shape>> cases = {
      {NetworkConfig{}, Shape{1, 32, 32}},
      {tiny_network(NormKind::instance, DownsampleKind::maxpool, UpsampleKind::resize_conv, 2, 4),
       Shape{1, 8, 8, 8}},
  };
  for (const auto& [config, input] : cases) {
    CAPTURE(describe(config));
    Model m(config, input, 3);
    const Shape in = batched(input, 3);
    for (Mode mode : {Mode::train, Mode::eval}) {
      const Tensor y = m.net->forward(tensor_from(random_vec(static_cast<size_t>(in.numel()), 1), in), mode);
      CHECK(y.shape() == batched(m.plan.output, 3));
      CHECK(y.shape() == in);
      CHECK(y.is_plain());
      for (double v : values_of(y)) REQUIRE(std::isfinite(v));
    }
  }
}

TEST_CASE("parameter gradients match central differences for every norm, downsample and upsample choice") {
  for (const auto& config : all_choices()) check_parameter_gradients(config, Shape{1, 16, 16}, 2, 1);
}

TEST_CASE(
    "parameter gradients of a ReLU U-Net (activations in place, keeping sign bits) match central "
    "differences") {
  // The physics default: ReLU without normalization, whose layers the U-Net runs in place and which
  // keep only sign bits; with batch norm the activations follow a norm instead of a conv.
  for (NormKind norm : {NormKind::none, NormKind::batch}) {
    NetworkConfig config = tiny_network(norm, DownsampleKind::maxpool, UpsampleKind::transposed_conv);
    config.activation = ActivationKind::relu;
    check_parameter_gradients(config, Shape{1, 16, 16}, 2, 2);
  }
}

TEST_CASE("parameter gradients of a 3D U-Net match central differences") {
  check_parameter_gradients(
      tiny_network(NormKind::batch, DownsampleKind::maxpool, UpsampleKind::resize_conv, 2, 4),
      Shape{1, 8, 8, 8}, 2, 2);
  check_parameter_gradients(
      tiny_network(NormKind::none, DownsampleKind::strided_conv, UpsampleKind::transposed_conv, 2, 4),
      Shape{1, 4, 8, 8}, 1, 2);
}

TEST_CASE("the layers' FLOPs add up to the plan's, without the first layer's input gradient") {
  std::vector<std::pair<NetworkConfig, Shape>> cases;
  for (const auto& net : all_choices()) cases.emplace_back(net, Shape{1, 16, 16});
  cases.emplace_back(NetworkConfig{}, Shape{1, 64, 64});
  cases.emplace_back(tiny_network(NormKind::batch, DownsampleKind::maxpool, UpsampleKind::resize_conv, 2, 4),
                     Shape{1, 8, 8, 8});
  for (const auto& [config, input] : cases) {
    CAPTURE(describe(config));
    Model m(config, input, 4);
    const Flops f = m.net->flops(4);
    CHECK(f.forward == doctest::Approx(4 * m.plan.forward_flops_per_sample).epsilon(1e-12));
    CHECK(f.backward() == doctest::Approx(4 * m.plan.backward_flops_per_sample).epsilon(1e-12));
    CHECK(f.total() == doctest::Approx(m.plan.flops_per_step).epsilon(1e-12));  // planned for batch 4
  }
}

TEST_CASE("a second forward and backward without zeroing accumulates the parameter gradients") {
  for (NormKind norm : {NormKind::none, NormKind::batch}) {
    const NetworkConfig config = tiny_network(norm, DownsampleKind::maxpool, UpsampleKind::transposed_conv);
    CAPTURE(describe(config));
    Model m(config, Shape{1, 16, 16}, 2);
    const Shape in{2, 1, 16, 16};
    const Tensor x = tensor_from(random_vec(static_cast<size_t>(in.numel()), 21), in);
    const Tensor dy = tensor_from(random_vec(static_cast<size_t>(in.numel()), 22), in);
    m.registry.zero_grads();
    m.net->forward(x, Mode::train);
    m.net->backward(dy);
    const Vec once = values_of(m.registry.flat_grads());
    m.net->forward(x, Mode::train);
    m.net->backward(dy);
    const Vec twice = values_of(m.registry.flat_grads());
    Vec doubled(once.size());
    for (size_t i = 0; i < once.size(); ++i) doubled[i] = 2 * once[i];
    CHECK(rel_max_error(twice, doubled) < 1e-6);
  }
}

TEST_CASE("eval forward leaves nothing for backward, and backward runs once per train forward") {
  Model m(tiny_network(NormKind::none, DownsampleKind::maxpool, UpsampleKind::resize_conv), Shape{1, 16, 16},
          2);
  const Shape in{2, 1, 16, 16};
  const Tensor x = tensor_from(random_vec(static_cast<size_t>(in.numel()), 31), in);
  const Tensor dy = tensor_from(random_vec(static_cast<size_t>(in.numel()), 32), in);
  // Without batch statistics both modes compute the same function.
  const Vec train = values_of(m.net->forward(x, Mode::train));
  const Vec eval = values_of(m.net->forward(x, Mode::eval));
  CHECK(rel_max_error(eval, train) < 1e-6);
  CHECK_THROWS_WITH_AS(m.net->backward(dy), doctest::Contains("without a train-mode forward"), Error);
  m.net->forward(x, Mode::train);
  m.net->backward(dy);
  CHECK_THROWS_AS(m.net->backward(dy), Error);
}

TEST_CASE("buffers are the batch norms' running statistics, named by layer, sharing the layers' memory") {
  Model m(tiny_network(NormKind::batch, DownsampleKind::maxpool, UpsampleKind::transposed_conv),
          Shape{1, 16, 16}, 2);
  int norms = 0;
  for (const auto& l : m.plan.layers) norms += l.op == LayerOp::norm;
  auto buffers = m.net->buffers();
  REQUIRE(buffers.size() == static_cast<size_t>(2 * norms));
  CHECK(buffers[0].first == "enc0.norm0.running_mean");
  CHECK(buffers[1].first == "enc0.norm0.running_var");
  const Shape in{2, 1, 16, 16};
  const Tensor x = tensor_from(random_vec(static_cast<size_t>(in.numel()), 41), in);
  // A train forward moves the statistics (the same tensors as the layers'), and they drive eval.
  CHECK(values_of(buffers[1].second)[0] == 1.0);
  m.net->forward(x, Mode::train);
  CHECK(values_of(buffers[1].second)[0] != 1.0);
  const Vec eval = values_of(m.net->forward(x, Mode::eval));
  for (auto& [name, t] : buffers) t.fill(name.ends_with("var") ? 4.0 : 0.5);
  CHECK(rel_max_error(values_of(m.net->forward(x, Mode::eval)), eval) > 1e-3);

  Model plain(tiny_network(NormKind::instance, DownsampleKind::maxpool, UpsampleKind::transposed_conv),
              Shape{1, 16, 16}, 2);
  CHECK(plain.net->buffers().empty());
}

TEST_CASE("the statistics hook reaches every batch norm, once in forward and once in backward") {
  Model m(tiny_network(NormKind::batch, DownsampleKind::strided_conv, UpsampleKind::resize_conv),
          Shape{1, 16, 16}, 2);
  int norms = 0;
  for (const auto& l : m.plan.layers) norms += l.op == LayerOp::norm;
  int calls = 0;
  m.net->set_stats_allreduce([&](double*, int) { ++calls; });
  const Shape in{2, 1, 16, 16};
  m.net->forward(tensor_from(random_vec(static_cast<size_t>(in.numel()), 51), in), Mode::train);
  CHECK(calls == norms);
  m.net->backward(tensor_from(random_vec(static_cast<size_t>(in.numel()), 52), in));
  CHECK(calls == 2 * norms);
}

TEST_CASE("forward takes any grid the network can halve, and rejects other channels, ranks and grids") {
  Model m(tiny_network(NormKind::none, DownsampleKind::maxpool, UpsampleKind::transposed_conv),
          Shape{1, 16, 16}, 2);
  const Shape other{2, 1, 32, 8};  // not the plan's grid: multigrid levels, prediction at any resolution
  const Tensor y =
      m.net->forward(tensor_from(random_vec(static_cast<size_t>(other.numel()), 3), other), Mode::train);
  CHECK(y.shape() == other);
  m.net->backward(Tensor::zeros(other));
  m.net->forward(Tensor::zeros(other), Mode::train);
  CHECK_THROWS_WITH_AS(m.net->backward(Tensor::zeros(Shape{2, 1, 16, 16})),  // not the forward's shape
                       doctest::Contains("the forward produced"), Error);
  CHECK_THROWS_AS(m.net->forward(Tensor::zeros(Shape{2, 2, 16, 16}), Mode::train), Error);
  CHECK_THROWS_AS(m.net->forward(Tensor::zeros(Shape{2, 16, 16}), Mode::train), Error);
  CHECK_THROWS_AS(m.net->forward(Tensor::zeros(Shape{2, 1, 16, 15}), Mode::train), Error);  // odd: no halving
}

// The whole network in a 16-bit activation type against fp32 on the same (16-bit representable)
// input and output gradient: catches what the layer tests cannot, a layer handing the next one a
// layout or type it does not expect, or a skip gradient summed in the wrong type. Rounding enters at
// every layer (each stores a 16-bit result, reads 16-bit weights): on these nets bf16 gives at most
// 1.3e-2 of the largest output and of the largest parameter gradient, so 8 u (bf16 3.1e-2, fp16
// 3.9e-3) holds them with room, while a dropped skip gradient or a swapped concat is off by O(1).
// Norms before a max-pool are left out: normalised values are near-tied in many windows, rounding
// flips their argmax, and the gradient of a tiny net moves by 6-11% (a property of the rounding, not
// of the code; the max-pool's own bf16 test and the fp32 central differences cover that wiring).
TEST_CASE(
    "a U-Net in bf16 (and fp16 on the GPU) matches fp32 within 16-bit rounding, every choice, 2D and 3D") {
  for_each_reduced_precision_backend([](Device device, const HalfType& type16) {
    std::vector<std::pair<NetworkConfig, Shape>> cases;
    for (const auto& config : all_choices())
      if (config.norm == NormKind::none || config.downsample != DownsampleKind::maxpool)
        cases.emplace_back(config, Shape{1, 16, 16});
    NetworkConfig relu = tiny_network(NormKind::none, DownsampleKind::maxpool, UpsampleKind::transposed_conv);
    relu.activation = ActivationKind::relu;
    cases.emplace_back(relu, Shape{1, 16, 16});
    cases.emplace_back(
        tiny_network(NormKind::batch, DownsampleKind::strided_conv, UpsampleKind::transposed_conv, 2),
        Shape{1, 8, 8, 8});
    cases.emplace_back(tiny_network(NormKind::none, DownsampleKind::maxpool, UpsampleKind::resize_conv, 2),
                       Shape{1, 8, 8, 8});
    for (const auto& [config, input] : cases) {
      CAPTURE(describe(config));
      CAPTURE(input.str());
      Model ref(config, input, 2), low(config, input, 2, device);
      const Shape in = batched(input, 2);
      const Vec x = rounded_to(type16.dtype, random_vec(static_cast<size_t>(in.numel()), 11, -2, 2));
      const Vec w = rounded_to(type16.dtype, random_vec(static_cast<size_t>(in.numel()), 12));
      ref.registry.zero_grads();
      low.registry.zero_grads();
      const Tensor y_ref = ref.net->forward(tensor_from(x, in), Mode::train);
      const Tensor y = low.net->forward(tensor_as(device, type16.dtype, x, in), Mode::train);
      CHECK(y.dtype() == DType::f32);  // the head runs in fp32
      CHECK(rel_max_error(values_as_f32(y), values_of(y_ref)) < 8 * type16.u);
      ref.net->backward(tensor_from(w, in));
      low.net->backward(tensor_from(w, in).to(device));
      const double grad_error =
          rel_max_error(host_values(low.registry.flat_grads()), values_of(ref.registry.flat_grads()));
      CHECK(grad_error < 8 * type16.u);
    }
  });
}

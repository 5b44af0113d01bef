// The FC-DenseNet plan builder (see fc_densenet_plan.hpp).
#include "nn/fc_densenet_plan.hpp"

#include <fmt/format.h>

#include <string>
#include <vector>

#include "config/choices.hpp"
#include "core/error.hpp"

namespace pdegen {

namespace {

// [norm ->] activation -> conv: a pre-activation layer.
int bn_act_conv(PlanBuilder& b, const NetworkConfig& net, const std::string& prefix, int level, int input,
                int64_t channels, int kernel, int stride) {
  const bool has_norm = net.norm != NormKind::none;
  int h = input;
  if (has_norm) h = b.norm(prefix + ".norm", level, h, net.norm);
  h = b.activation(prefix + ".act", level, h, net.activation);
  return b.conv(prefix + ".conv", level, h, channels, kernel, stride, !has_norm);
}

// A dense block of `layers` layers on `input`. Returns concat(input, new features) when `whole`,
// else concat(new features) (the one layer's output for a block of one).
int dense_block(PlanBuilder& b, const NetworkConfig& net, const std::string& prefix, int level, int input,
                int layers, bool whole) {
  std::vector<int> all{input}, added;
  int x = input;
  for (int j = 0; j < layers; ++j) {
    const int y = bn_act_conv(b, net, fmt::format("{}.layer{}", prefix, j), level, x, net.growth_rate,
                              net.kernel_size, 1);
    all.push_back(y);
    added.push_back(y);
    if (j + 1 < layers) x = b.concat(fmt::format("{}.in{}", prefix, j + 1), level, all);
  }
  if (whole) return b.concat(prefix + ".out", level, all);
  return added.size() == 1 ? added[0] : b.concat(prefix + ".new", level, added);
}

}  // namespace

NetworkPlan plan_fc_densenet(const Deck& deck) {
  check_deck_grid(deck, static_cast<int>(deck.network.block_layers.size()) - 1, "dense blocks - 1",
                  fmt::format("an FC-DenseNet of {} dense blocks (network.block_layers)",
                              deck.network.block_layers.size()),
                  "fewer dense blocks");
  return plan_fc_densenet(deck.network, input_shape(deck.problem), 1, deck.training.batch_size);
}

NetworkPlan plan_fc_densenet(const NetworkConfig& net, const Shape& input, int64_t out_channels,
                             int64_t global_batch) {
  PDEGEN_CHECK(input.rank() == 3 || input.rank() == 4,
               "FC-DenseNet input must be [C, H, W] or [C, D, H, W], got {}", input.str());
  const int blocks = static_cast<int>(net.block_layers.size());
  PDEGEN_CHECK(blocks >= 1 && net.growth_rate >= 1 && net.first_channels >= 1 && global_batch >= 1,
               "invalid network settings (the deck reader should have rejected them)");
  const int64_t factor = int64_t{1} << std::min(blocks - 1, 62);
  for (int i = 1; i < input.rank(); ++i)
    if (input[i] % factor != 0)
      throw UserError(
          fmt::format("grid extent {} of the FC-DenseNet input {} is not divisible by 2^{} = {} ({} "
                      "dense blocks make {} down-samplings)",
                      input[i], input.str(), blocks - 1, factor, blocks, blocks - 1));
  NetworkPlan plan;
  PlanBuilder b(plan, input, global_batch);
  std::string layers;
  for (int n : net.block_layers) layers += fmt::format("{}{}", layers.empty() ? "" : " ", n);
  plan.description =
      fmt::format("FC-DenseNet ({}D, preset {}, growth {}, block layers {}, norm {})", input.rank() - 1,
                  name_of(net.preset), net.growth_rate, layers, name_of(net.norm));
  const bool bias = net.norm == NormKind::none;
  int h = b.conv("first", 0, PlanLayer::network_input, net.first_channels, net.kernel_size, 1, bias);
  std::vector<int> skips;
  for (int i = 0; i + 1 < blocks; ++i) {
    const int whole =
        dense_block(b, net, fmt::format("down{}", i), i, h, net.block_layers[static_cast<size_t>(i)], true);
    skips.push_back(whole);
    const int64_t channels = plan.layers[static_cast<size_t>(whole)].out[0];
    const std::string td = fmt::format("td{}", i);
    if (net.downsample == DownsampleKind::strided_conv) {
      h = bn_act_conv(b, net, td, i + 1, whole, channels, 2, 2);
    } else {
      h = bn_act_conv(b, net, td, i, whole, channels, 1, 1);
      h = b.pool(net.downsample == DownsampleKind::maxpool ? LayerOp::max_pool : LayerOp::avg_pool,
                 td + ".pool", i + 1, h);
    }
  }
  // Up the decoder go the new features of each block; the last block's whole output goes to the head.
  int up = dense_block(b, net, "bottleneck", blocks - 1, h, net.block_layers.back(), blocks == 1);
  for (int i = blocks - 2; i >= 0; --i) {
    const int64_t channels = plan.layers[static_cast<size_t>(up)].out[0];
    const std::string tu = fmt::format("tu{}", i);
    int t;
    if (net.upsample == UpsampleKind::transposed_conv) {
      t = b.conv_transpose(tu + ".conv", i, up, channels, bias);
    } else {
      t = b.upsample_nearest(tu + ".resize", i, up);
      t = b.conv(tu + ".conv", i, t, channels, 3, 1, bias);
    }
    const int joined = b.concat(fmt::format("up{}.in", i), i, {t, skips[static_cast<size_t>(i)]});
    up = dense_block(b, net, fmt::format("up{}", i), i, joined, net.block_layers[static_cast<size_t>(i)],
                     i == 0);
  }
  b.conv("head", 0, up, out_channels, 1, 1, true);
  b.finish();
  return plan;
}

}  // namespace pdegen

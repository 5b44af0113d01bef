// The U-Net plan builder (see unet_plan.hpp).
#include "nn/unet_plan.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <string>
#include <vector>

#include "config/choices.hpp"
#include "core/error.hpp"

namespace pdegen {

namespace {

// One level's conv block: convs_per_level x [conv -> norm -> activation]; returns its last layer.
int conv_block(PlanBuilder& b, const NetworkConfig& net, const std::string& prefix, int level, int input,
               int64_t channels) {
  const bool has_norm = net.norm != NormKind::none;
  int h = input;
  for (int j = 0; j < net.convs_per_level; ++j) {
    h = b.conv(fmt::format("{}.conv{}", prefix, j), level, h, channels, net.kernel_size, 1, !has_norm);
    if (has_norm) h = b.norm(fmt::format("{}.norm{}", prefix, j), level, h, net.norm);
    h = b.activation(fmt::format("{}.act{}", prefix, j), level, h, net.activation);
  }
  return h;
}

// Channels per level, checked before they can overflow.
std::vector<int64_t> level_channels(const NetworkConfig& net) {
  std::vector<int64_t> channels;
  int64_t c = net.base_channels;
  for (int i = 0; i < net.depth; ++i) {
    if (c > (int64_t{1} << 20))
      throw UserError(
          fmt::format("network: level {} would have {} channels (base_channels {} x "
                      "channel_multiplier {}^{}); more than 2^20 is not a sensible U-Net",
                      i, c, net.base_channels, net.channel_multiplier, i));
    channels.push_back(c);
    c *= net.channel_multiplier;
  }
  return channels;
}

}  // namespace

NetworkPlan plan_unet(const NetworkConfig& net, const Shape& input, int64_t out_channels,
                      int64_t global_batch) {
  PDEGEN_CHECK(input.rank() == 3 || input.rank() == 4,
               "U-Net input must be [C, H, W] or [C, D, H, W], got {}", input.str());
  PDEGEN_CHECK(net.depth >= 1 && net.base_channels >= 1 && net.channel_multiplier >= 1 &&
                   net.convs_per_level >= 1 && net.kernel_size >= 1 && net.kernel_size % 2 == 1 &&
                   global_batch >= 1,
               "invalid network settings (the deck reader should have rejected them)");
  const int64_t factor = int64_t{1} << std::min(net.depth - 1, 62);
  for (int i = 1; i < input.rank(); ++i)
    if (input[i] % factor != 0)
      throw UserError(fmt::format("grid extent {} of the U-Net input {} is not divisible by 2^(depth-1) = {}",
                                  input[i], input.str(), factor));
  const std::vector<int64_t> channels = level_channels(net);

  NetworkPlan plan;
  PlanBuilder b(plan, input, global_batch);
  plan.description =
      fmt::format("U-Net ({}D, depth {}, base {} channels x{} per level, norm {})", input.rank() - 1,
                  net.depth, net.base_channels, net.channel_multiplier, name_of(net.norm));
  const bool bias = net.norm == NormKind::none;
  int h = PlanLayer::network_input;
  std::vector<int> skips(static_cast<size_t>(net.depth), -1);
  for (int i = 0; i < net.depth; ++i) {
    if (i > 0) {
      const std::string name = fmt::format("down{}", i - 1);
      if (net.downsample == DownsampleKind::strided_conv)
        h = b.conv(name, i, h, channels[static_cast<size_t>(i - 1)], 2, 2, bias);
      else
        h = b.pool(net.downsample == DownsampleKind::maxpool ? LayerOp::max_pool : LayerOp::avg_pool, name, i,
                   h);
    }
    h = conv_block(b, net, fmt::format("enc{}", i), i, h, channels[static_cast<size_t>(i)]);
    skips[static_cast<size_t>(i)] = h;
  }
  for (int i = net.depth - 2; i >= 0; --i) {
    const int64_t ci = channels[static_cast<size_t>(i)];
    if (net.upsample == UpsampleKind::transposed_conv) {
      h = b.conv_transpose(fmt::format("dec{}.up", i), i, h, ci, bias);
    } else {
      h = b.upsample_nearest(fmt::format("dec{}.resize", i), i, h);
      h = b.conv(fmt::format("dec{}.up", i), i, h, ci, 3, 1, bias);
    }
    h = b.concat(fmt::format("dec{}.concat", i), i, {skips[static_cast<size_t>(i)], h});
    h = conv_block(b, net, fmt::format("dec{}", i), i, h, ci);
  }
  b.conv("head", 0, h, out_channels, 1, 1, true);
  b.finish();
  return plan;
}

NetworkPlan plan_unet(const Deck& deck) {
  check_deck_grid(deck, deck.network.depth - 1, "network.depth - 1",
                  fmt::format("a U-Net of network.depth {}", deck.network.depth), "a smaller network.depth");
  return plan_unet(deck.network, input_shape(deck.problem), 1, deck.training.batch_size);
}

std::string unet_name_when_deepened(const std::string& name, int extra) {
  for (const std::string_view prefix : {"enc", "dec", "down"}) {
    if (!name.starts_with(prefix)) continue;
    size_t end = prefix.size();
    while (end < name.size() && name[end] >= '0' && name[end] <= '9') ++end;
    if (end == prefix.size()) continue;
    const int level = std::stoi(name.substr(prefix.size(), end - prefix.size()));
    return fmt::format("{}{}{}", prefix, level + extra, name.substr(end));
  }
  return name;
}

}  // namespace pdegen

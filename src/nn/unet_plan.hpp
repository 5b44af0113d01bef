// The U-Net family as a plan builder (nn/network_plan.hpp): no class of its own, the graph executor
// runs the plan.
//
// Architecture (network section; c_i = base_channels * channel_multiplier^i, d = spatial dims):
//   encoder level i = 0 .. depth-1 (the last is the bottleneck): convs_per_level x
//       [conv k^d, padding k/2 -> norm (unless none) -> activation]
//   between levels: 2^d max-pool, or 2^d stride-2 conv c_i -> c_i (downsample: strided_conv)
//   decoder level i = depth-2 .. 0: up-sample c_{i+1} -> c_i by a 2^d stride-2 transposed conv, or
//       by nearest 2x resize + 3^d conv (upsample: resize_conv); concat -> 2 c_i channels, the
//       encoder's level-i output first; then convs_per_level x [conv -> norm -> act], the first
//       conv 2 c_i -> c_i
//   head: 1^d conv c_0 -> out_channels with bias.
// Every conv except the head has a bias only when norm is none (a bias before a norm is undone by
// it); norms are affine (a learnable gamma and beta per channel).
#pragma once

#include "config/deck.hpp"
#include "nn/network_plan.hpp"

namespace pdegen {

// The plan for per-sample input shape `input` ([C, (D,) H, W]). Throws UserError when a spatial
// extent cannot be halved depth-1 times.
NetworkPlan plan_unet(const NetworkConfig& network, const Shape& input, int64_t out_channels,
                      int64_t global_batch);

// The plan for a deck: input and output one channel on the problem's grid (sample_shape), global
// batch training.batch_size. The divisibility error names problem.resolution (or
// problem.time_resolution) and network.depth.
NetworkPlan plan_unet(const Deck& deck);

// The name that parameter or buffer `name` of a U-Net layer ("enc1.conv0.weight", "down0.weight",
// "dec2.up.bias", "head.bias") has in a U-Net `extra` levels deeper whose new levels are the
// outermost: the level numbers grow by `extra`, the head keeps its name. A U-Net deepened this way,
// with base_channels divided by channel_multiplier^extra, holds the shallower one as its inner
// levels, with the same shapes except the first conv of the formerly outermost level and the head.
std::string unet_name_when_deepened(const std::string& name, int extra);

}  // namespace pdegen

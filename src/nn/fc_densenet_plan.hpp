// The FC-DenseNet family ("The One Hundred Layers Tiramisu", Jegou et al. 2017) as a plan builder
// (nn/network_plan.hpp); the graph executor runs it like any plan.
//
// Architecture (network section; k = growth_rate, n_i = block_layers[i], L = its length):
//   first: conv k^d -> first_channels
//   dense block of n layers on input x: layer j reads concat(x, y_0 .. y_{j-1}) and computes
//       y_j = conv k^d (norm (unless none) -> activation) with k output channels
//   down path i = 0 .. L-2: block n_i; its output concat(x, y_0 .. y_{n-1}) is the skip; then the
//       transition down: norm -> activation -> 1^d conv (channels kept) -> 2^d pool (or a 2^d stride-2
//       conv instead of 1^d conv + pool, with downsample: strided_conv)
//   bottleneck: block n_{L-1}; only its new features concat(y_0 .. y_{n-1}) go up
//   up path i = L-2 .. 0: transition up of the new features (2^d stride-2 transposed conv, or nearest
//       2x resize + 3^d conv, channels kept), concat with skip i, block n_i; its new features go up, the
//       last block's whole output concat(input, y...) to the head
//   head: 1^d conv -> out_channels with bias.
// Convolutions have a bias only when norm is none (the next norm undoes one). Dropout (0.2 in the
// paper, for classification) is not part of it.
#pragma once

#include "config/deck.hpp"
#include "nn/network_plan.hpp"

namespace pdegen {

// The plan for per-sample input shape `input` ([C, (D,) H, W]). Throws UserError when a spatial
// extent cannot be halved block_layers.size() - 1 times.
NetworkPlan plan_fc_densenet(const NetworkConfig& network, const Shape& input, int64_t out_channels,
                             int64_t global_batch);
// The plan for a deck (see plan_unet(const Deck&)).
NetworkPlan plan_fc_densenet(const Deck& deck);

}  // namespace pdegen

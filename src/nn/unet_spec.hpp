// The U-Net architecture as a plan: the one description of the network that the builder walks to
// create layers and that `pdegen check` prints, with per-layer shapes, parameters and FLOPs, and the
// totals (parameters, FLOPs per sample and per training step, peak activation memory of a step).
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

#include <string>
#include <string_view>
#include <vector>

#include "config/deck.hpp"
#include "core/shape.hpp"
#include "nn/layer.hpp"

namespace pdegen {

enum class UNetOp { conv, conv_transpose, norm, activation, max_pool, upsample_nearest, concat };

struct UNetLayer {
  UNetOp op = UNetOp::conv;
  std::string name;  // unique: parameters are "<name>.weight" and "<name>.bias"
  int level = 0;     // resolution level it works at (its output's)
  Shape in, out;     // per sample: C, [D,] H, W; for concat `in` is the up-sampled input only
  // conv, conv_transpose, max_pool (same on every axis):
  int kernel = 0, stride = 1, padding = 0;
  bool bias = false;
  NormKind norm = NormKind::none;                        // op == norm
  ActivationKind activation = ActivationKind::identity;  // op == activation
  // concat: the layer whose output is concatenated with this layer's input, its channels first.
  int skip = -1;
  // False for the first layer: its input is the coefficient field, which needs no gradient.
  bool input_needs_grad = true;
  int64_t parameters = 0;
  Flops flops;  // per sample, with the FLOP conventions of the layers in nn/

  // The kind() of the layer that implements it: "conv", "conv_transpose", "batch_norm", ...
  std::string_view kind() const;
};

struct UNetPlan {
  int spatial_dims = 2;
  Shape input, output;  // per sample: C, [D,] H, W
  int64_t global_batch = 1;
  // Forward order; layer i reads layer i-1's output (the network input for i = 0) and, for a
  // concat, also layers[skip]'s output.
  std::vector<UNetLayer> layers;

  int64_t parameters = 0;
  double forward_flops_per_sample = 0;
  double backward_flops_per_sample = 0;
  double flops_per_step = 0;  // (forward + backward) per sample x global batch
  // A training step on one process for the global batch, fp32: the input and every layer output
  // kept for backward, plus the gradients alive at the worst point of backward (the layer's dy and
  // dx and the skip gradients waiting for their encoder layer), each output freed after its layer's
  // backward.
  int64_t peak_activation_bytes = 0;

  // One line per layer: index, name, kind, input -> output, parameters, MFLOP forward/backward.
  std::vector<std::string> layer_table() const;
};

// The plan for per-sample input shape `input` ([C, (D,) H, W]). Throws UserError when a spatial
// extent cannot be halved depth-1 times.
UNetPlan plan_unet(const NetworkConfig& network, const Shape& input, int64_t out_channels,
                   int64_t global_batch);

// The plan for a deck: input and output one channel on the problem's grid (sample_shape), global
// batch training.batch_size. The divisibility error names problem.resolution (or
// problem.time_resolution) and network.depth.
UNetPlan plan_unet(const Deck& deck);

}  // namespace pdegen

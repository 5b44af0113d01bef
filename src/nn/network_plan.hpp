// A network as a plan: the one description of any generator network, which the graph executor
// (nn/graph_network.hpp) walks to create and run the layers and `pdegen check` prints. A plan is a
// list of layers in forward order; each names the earlier layers (or the network input) whose
// outputs it reads, so a concat can join any number of tensors and one tensor can feed several
// layers. Network families are functions that write a plan with a PlanBuilder (nn/unet_plan.hpp);
// the totals (parameters, FLOPs, peak activation memory) and the layer table are computed here,
// once for every family.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "config/deck.hpp"
#include "core/shape.hpp"
#include "nn/layer.hpp"

namespace pdegen {

enum class LayerOp { conv, conv_transpose, norm, activation, max_pool, avg_pool, upsample_nearest, concat };

struct PlanLayer {
  // In `inputs`: the network's input rather than a layer's output.
  static constexpr int network_input = -1;

  LayerOp op = LayerOp::conv;
  std::string name;  // unique: parameters are "<name>.weight" and "<name>.bias"
  int level = 0;     // resolution level it works at (its output's)
  // The tensors it reads, in order: earlier layer indices or network_input. One for every op but
  // concat, which joins two or more along channels in this order.
  std::vector<int> inputs;
  Shape in, out;  // per sample: C, [D,] H, W; for a concat `in` is its last input's shape
  // conv, conv_transpose, max_pool, avg_pool (same on every axis):
  int kernel = 0, stride = 1, padding = 0;
  bool bias = false;
  NormKind norm = NormKind::none;                        // op == norm
  ActivationKind activation = ActivationKind::identity;  // op == activation
  // False when it reads only the network input (the coefficient field needs no gradient).
  bool input_needs_grad = true;
  int64_t parameters = 0;
  Flops flops;  // per sample, with the FLOP conventions of the layers in nn/

  // The kind() of the layer that implements it: "conv", "conv_transpose", "batch_norm", ...
  std::string_view kind() const;
};

struct NetworkPlan {
  // One line for `pdegen check`, written by the family's builder, e.g.
  // "U-Net (2D, depth 4, base 16 channels x2 per level, norm none)".
  std::string description;
  int spatial_dims = 2;
  Shape input, output;  // per sample: C, [D,] H, W; the output is the last layer's
  int64_t global_batch = 1;
  std::vector<PlanLayer> layers;  // forward order

  int64_t parameters = 0;
  double forward_flops_per_sample = 0;
  double backward_flops_per_sample = 0;
  double flops_per_step = 0;  // (forward + backward) per sample x global batch
  // A training step on one process for the global batch, fp32: the input and every layer output
  // kept for backward, plus the gradients alive at the worst point of backward (the layer's dy and
  // dx and the gradients waiting for their producer's backward). A tensor stays alive until the
  // backward of the last layer that uses it: its readers, and its producer, whose backward may read
  // it (an activation keeps its output; an in-place one shares it with the layer before).
  int64_t peak_activation_bytes = 0;

  // Per-sample shape of what `inputs` entry `producer` names (the network input or a layer output).
  const Shape& shape_of(int producer) const;
  // For each layer, the later layers that read its output, in forward order.
  std::vector<std::vector<int>> readers() const;

  // One line per layer: index, name, kind, input -> output, parameters, MFLOP forward/backward.
  std::vector<std::string> layer_table() const;
};

// The input nodes one output node depends on, along each axis (every kernel here is the same on
// every axis): output node o reads the input nodes from jump * o + lo to jump * o + hi. Computed
// layer by layer (a convolution widens the window by its kernel, a stride or a pool multiplies the
// jump, an up-sampling divides it, a concat takes the union); bounded is false when a layer couples
// every node (instance norm's per-sample statistics). Used to cut a domain into tiles whose halo
// makes tiled inference equal whole-domain inference.
struct ReceptiveField {
  double jump = 1, lo = 0, hi = 0;
  bool bounded = true;
  // Input nodes on either side of an output node's own position that it may depend on.
  int64_t halo() const;
};
// Of `plan`'s output in inference (batch norm with running statistics is node-wise there).
ReceptiveField receptive_field(const NetworkPlan& plan);

// Throws UserError naming problem.resolution (or problem.time_resolution) when the deck's grid
// cannot be halved `halvings` (= `exponent`, the keys it comes from) times, as `network` ("a U-Net of
// network.depth 4") needs; `remedy` ("a smaller network.depth") ends the message.
void check_deck_grid(const Deck& deck, int halvings, const std::string& exponent, const std::string& network,
                     const std::string& remedy);

// Appends layers to a plan, each reading the tensors it is given, with its output shape, parameter
// count and FLOPs (the conventions of Conv::flops, ConvTranspose::flops, Pool::flops,
// BatchNorm/InstanceNorm::flops and Activation::flops). Every method returns the new layer's index.
class PlanBuilder {
 public:
  // Starts `plan` for per-sample input shape `input` ([C, (D,) H, W]) and global batch `global_batch`.
  PlanBuilder(NetworkPlan& plan, const Shape& input, int64_t global_batch);

  // Convolution with padding kernel/2 at stride 1 and 0 otherwise.
  int conv(std::string name, int level, int input, int64_t out_channels, int kernel, int stride, bool bias);
  // Transposed convolution, kernel 2, stride 2: doubles every spatial extent.
  int conv_transpose(std::string name, int level, int input, int64_t out_channels, bool bias);
  int norm(std::string name, int level, int input, NormKind kind);
  int activation(std::string name, int level, int input, ActivationKind kind);
  int pool(LayerOp op, std::string name, int level, int input);  // max or avg over 2^d windows, stride 2
  int upsample_nearest(std::string name, int level, int input);
  // Joins `inputs` (two or more, equal spatial extents) along channels, in this order.
  int concat(std::string name, int level, std::vector<int> inputs);

  // The plan's output is the last layer's; checks the graph (every input earlier, every output but
  // the last read by a later layer, unique names) and fills in the totals. Throws Error otherwise.
  void finish();

 private:
  PlanLayer& add(LayerOp op, std::string name, int level, std::vector<int> inputs);

  NetworkPlan& plan_;
  int dims_;
};

}  // namespace pdegen

// The U-Net generator: the layers of a UNetPlan (nn/unet_spec.hpp, the one description of the
// architecture), created in the plan's order with the plan's names, run forward in that order and
// backward in reverse. The network owns no activations: each layer keeps what its own backward
// needs, and the network holds a skip source's output only until its concat has read it. Backward
// routes each concat's gradient for the skip back to the encoder layer and adds it to that layer's
// output gradient before the layer's backward runs.
//
// Memory (docs/architecture.md, "Memory of a training step"): an activation after a conv or norm
// runs in place on that layer's output, and backward runs activations in place on the gradient; a
// skip source's ReLU keeps only sign bits, so its output is freed after the concat; each layer drops
// what it kept as soon as its backward has run.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "core/timeline.hpp"
#include "nn/batch_norm.hpp"
#include "nn/layer.hpp"
#include "nn/parameter.hpp"
#include "nn/unet_spec.hpp"

namespace pdegen {

class UNet {
 public:
  // Creates every layer of `plan` and registers its parameters ("<layer>.weight", "<layer>.bias")
  // in forward order; the registry is finalized by the caller. Throws Error if a layer's output
  // shape disagrees with the plan's.
  UNet(const UNetPlan& plan, ParameterRegistry& registry);
  ~UNet();
  UNet(const UNet&) = delete;
  UNet& operator=(const UNet&) = delete;

  // x: [b, plan.input...] fp32, any layout (the coefficient field comes plain). Returns
  // [b, plan.output...] plain fp32. Train mode prepares backward; eval mode leaves nothing for it.
  Tensor forward(const Tensor& x, Mode mode);
  // dy: dL/d(output) for the last train-mode forward, [b, plan.output...] in any layout. Parameter
  // gradients are accumulated (+=) into the registry; the input gradient is not computed.
  void backward(const Tensor& dy);

  // The running statistics of every batch norm, named "<layer>.running_mean" / "<layer>.running_var",
  // in layer order. The tensors share memory with the layers: copying into them restores them.
  std::vector<std::pair<std::string, Tensor>> buffers();
  // The synchronized batch norm hook (nn/batch_norm.hpp), given to every batch norm layer.
  void set_stats_allreduce(const StatsAllreduce& allreduce);
  // Records one event per layer backward (named after the layer) while `timeline` is active.
  void set_timeline(Timeline* timeline) { timeline_ = timeline; }

  const UNetPlan& plan() const { return plan_; }
  // The layers' own FLOP counts for a batch of `batch` samples: the sum of their flops(), without
  // the input gradient of the first layer, which is not computed.
  Flops flops(int64_t batch) const;

 private:
  struct Node;
  Shape batched(const Shape& per_sample, int64_t batch) const;

  UNetPlan plan_;
  std::vector<Node> nodes_;  // one per plan layer, same order
  int64_t batch_ = 0;        // of the last train-mode forward; 0 when backward has nothing to use
  Timeline* timeline_ = nullptr;
};

}  // namespace pdegen

// What the application sees of a generator network, whatever its family: forward, backward with
// the parameter gradients accumulated into the registry, the state that is not a parameter
// (batch-norm running statistics), the hooks a training run installs, and the plan it runs.
// Networks come from make_network (nn/network_factory.hpp).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "core/timeline.hpp"
#include "nn/batch_norm.hpp"
#include "nn/layer.hpp"
#include "nn/network_plan.hpp"

namespace pdegen {

class Network {
 public:
  virtual ~Network() = default;

  // x: [b, plan().input[0], grid...] fp32, or bf16/fp16 for mixed precision, any layout (the
  // coefficient field comes plain). The layers are convolutional, so the grid may be any one the
  // network's down-sampling divides, not only the plan's (plan_network of a deck at that resolution
  // says whether it does). Returns [b, plan().output[0], grid...] plain fp32 (the head runs in fp32
  // whatever x's type). Train mode prepares backward; eval mode leaves nothing for it.
  virtual Tensor forward(const Tensor& x, Mode mode) = 0;
  // dy: dL/d(output) for the last train-mode forward, of that forward's output shape, any layout.
  // Parameter gradients are accumulated (+=) into the registry; the input gradient is not computed.
  virtual void backward(const Tensor& dy) = 0;

  // The running statistics of every batch norm, named "<layer>.running_mean" / "<layer>.running_var",
  // in layer order. The tensors share memory with the layers: copying into them restores them.
  virtual std::vector<std::pair<std::string, Tensor>> buffers() = 0;
  // The synchronized batch norm hook (nn/batch_norm.hpp), given to every batch norm layer.
  virtual void set_stats_allreduce(const StatsAllreduce& allreduce) = 0;
  // Records one event per layer backward (named after the layer) while `timeline` is active.
  virtual void set_timeline(Timeline* timeline) = 0;

  virtual const NetworkPlan& plan() const = 0;
  // The layers' own FLOP counts for a batch of `batch` samples: the sum of their flops(), without
  // the input gradient of layers that read only the network input, which is not computed.
  virtual Flops flops(int64_t batch) const = 0;
};

}  // namespace pdegen

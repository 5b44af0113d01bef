// The graph executor: runs any network plan (nn/network_plan.hpp). It creates the plan's layers in
// the plan's order with the plan's names, runs forward in that order and backward in reverse. A
// concat joins any number of tensors; a tensor read by several layers gets the sum of its readers'
// gradients before its producer's backward runs. The executor owns no activations beyond the walk:
// each layer keeps what its own backward needs, and a forward output is held only until its last
// reader has run. Under mixed precision the last layer (the head) runs in fp32, so the output is
// fp32 in every precision.
//
// Memory (docs/architecture.md, "Memory of a training step"): an activation that is the only reader
// of a conv, transposed conv or norm output runs in place on it, and backward runs activations in
// place on the gradient; sign-only activations (ReLU) keep sign bits, so a tensor read again later
// (a U-Net's skip) is freed after its last reader instead of living until its producer's backward;
// convolutions drop their input inside backward, and every layer drops what it kept right after
// its backward.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "core/parameter.hpp"
#include "nn/network.hpp"

namespace pdegen {

class GraphNetwork final : public Network {
 public:
  // Creates every layer of `plan` and registers its parameters ("<layer>.weight", "<layer>.bias")
  // in forward order; the registry is finalized by the caller. Throws Error if a layer's output
  // shape disagrees with the plan's.
  GraphNetwork(const NetworkPlan& plan, ParameterRegistry& registry);
  ~GraphNetwork() override;
  GraphNetwork(const GraphNetwork&) = delete;
  GraphNetwork& operator=(const GraphNetwork&) = delete;

  Tensor forward(const Tensor& x, Mode mode) override;
  void backward(const Tensor& dy) override;
  std::vector<std::pair<std::string, Tensor>> buffers() override;
  void set_stats_allreduce(const StatsAllreduce& allreduce) override;
  void set_timeline(Timeline* timeline) override { timeline_ = timeline; }
  const NetworkPlan& plan() const override { return plan_; }
  Flops flops(int64_t batch) const override;

 private:
  struct Node;
  static void make_layer(Node& node, const PlanLayer& l, int ndim, ParameterRegistry& registry);
  static void make_norm(Node& node, const PlanLayer& l, ParameterRegistry& registry);
  void check_layer(size_t k) const;
  void choose_in_place();
  Tensor run_forward(size_t k, const Tensor& x, const std::vector<Tensor>& outputs, Mode mode);
  void run_backward(size_t k, Tensor g, bool g_is_ours, std::vector<Tensor>& grads);

  NetworkPlan plan_;
  std::vector<Node> nodes_;              // one per plan layer, same order
  std::vector<int> last_reader_;         // per layer: the last layer reading its output (-1: none)
  int64_t batch_ = 0;                    // of the last train-mode forward; 0 when backward has nothing to use
  DType output_dtype_ = DType::f32;      // of the last forward's output: its gradient comes in that type
  Shape output_shape_;                   // of the last train-mode forward's output
  DType head_input_dtype_ = DType::f32;  // what the fp32 head's dx is narrowed to (see run_forward)
  Timeline* timeline_ = nullptr;
};

}  // namespace pdegen

// The receptive field of a network plan (see network_plan.hpp): an interval map per tensor, node o of
// the tensor reading the input nodes [jump * o + lo, jump * o + hi], pushed through the layers in
// forward order. Jumps are powers of two, exact in double.
#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "nn/network_plan.hpp"

namespace pdegen {

namespace {

// A window of `kernel` nodes from o * stride - padding (convolution, pooling).
ReceptiveField strided(const ReceptiveField& in, int kernel, int stride, int padding) {
  return {in.jump * stride, in.lo - in.jump * padding, in.hi + in.jump * (kernel - 1 - padding), in.bounded};
}

// Output o takes input i where o = i * stride + t - padding, t in [0, kernel) (transposed
// convolution; nearest up-sampling is kernel = stride, padding 0): i in
// [(o + padding - kernel + 1) / stride, (o + padding) / stride].
ReceptiveField spread(const ReceptiveField& in, int kernel, int stride, int padding) {
  return {in.jump / stride, in.lo + in.jump * (padding - kernel + 1) / stride,
          in.hi + in.jump * padding / stride, in.bounded};
}

}  // namespace

int64_t ReceptiveField::halo() const { return static_cast<int64_t>(std::ceil(std::max(-lo, hi))); }

ReceptiveField receptive_field(const NetworkPlan& plan) {
  std::vector<ReceptiveField> field(plan.layers.size());
  auto of = [&](int producer) {
    return producer == PlanLayer::network_input ? ReceptiveField{} : field[static_cast<size_t>(producer)];
  };
  for (size_t i = 0; i < plan.layers.size(); ++i) {
    const PlanLayer& l = plan.layers[i];
    const ReceptiveField in = of(l.inputs.front());
    switch (l.op) {
      case LayerOp::conv:
      case LayerOp::max_pool:
      case LayerOp::avg_pool:
        field[i] = strided(in, l.kernel, l.stride, l.padding);
        break;
      case LayerOp::conv_transpose:
        field[i] = spread(in, l.kernel, l.stride, l.padding);
        break;
      case LayerOp::upsample_nearest:
        field[i] = spread(in, 2, 2, 0);
        break;
      case LayerOp::norm:  // instance norm: per-sample statistics over every node
        field[i] = in;
        field[i].bounded = in.bounded && l.norm != NormKind::instance;
        break;
      case LayerOp::activation:
        field[i] = in;
        break;
      case LayerOp::concat:
        field[i] = in;
        for (int p : l.inputs) {
          const ReceptiveField f = of(p);
          PDEGEN_CHECK(f.jump == in.jump, "network plan: concat '{}' joins tensors of different node spacing",
                       l.name);
          field[i].lo = std::min(field[i].lo, f.lo);
          field[i].hi = std::max(field[i].hi, f.hi);
          field[i].bounded = field[i].bounded && f.bounded;
        }
        break;
    }
  }
  return plan.layers.empty() ? ReceptiveField{} : field.back();
}

}  // namespace pdegen

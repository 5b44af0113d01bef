// Networks by name: the plan of the family that `network.type` names, and the network that runs a
// plan. Adding a family is a plan builder (like nn/unet_plan.hpp) and one case in plan_network.
#pragma once

#include <memory>

#include "config/deck.hpp"
#include "core/parameter.hpp"
#include "nn/network.hpp"
#include "nn/network_plan.hpp"

namespace pdegen {

// The plan of the deck's network.type for the deck's problem: one input and one output channel on
// the problem's grid (sample_shape), global batch training.batch_size. Throws UserError naming the
// deck keys when the grid does not suit the network (e.g. a U-Net's problem.resolution and
// network.depth).
NetworkPlan plan_network(const Deck& deck);

// The plan of `network.type` for per-sample input shape `input` ([C, (D,) H, W]).
NetworkPlan plan_network(const NetworkConfig& network, const Shape& input, int64_t out_channels,
                         int64_t global_batch);

// Creates every layer of `plan` and registers its parameters ("<layer>.weight", "<layer>.bias") in
// forward order; the registry is finalized by the caller.
std::unique_ptr<Network> make_network(const NetworkPlan& plan, ParameterRegistry& registry);

}  // namespace pdegen

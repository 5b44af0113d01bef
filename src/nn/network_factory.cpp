// The network factory (see network_factory.hpp).
#include "nn/network_factory.hpp"

#include "core/error.hpp"
#include "nn/fc_densenet_plan.hpp"
#include "nn/graph_network.hpp"
#include "nn/unet_plan.hpp"

namespace pdegen {

NetworkPlan plan_network(const Deck& deck) {
  switch (deck.network.type) {
    case NetworkKind::unet:
      return plan_unet(deck);
    case NetworkKind::fc_densenet:
      return plan_fc_densenet(deck);
  }
  PDEGEN_THROW("network.type {} has no plan builder", static_cast<int>(deck.network.type));
}

NetworkPlan plan_network(const NetworkConfig& network, const Shape& input, int64_t out_channels,
                         int64_t global_batch) {
  switch (network.type) {
    case NetworkKind::unet:
      return plan_unet(network, input, out_channels, global_batch);
    case NetworkKind::fc_densenet:
      return plan_fc_densenet(network, input, out_channels, global_batch);
  }
  PDEGEN_THROW("network.type {} has no plan builder", static_cast<int>(network.type));
}

std::unique_ptr<Network> make_network(const NetworkPlan& plan, ParameterRegistry& registry) {
  return std::make_unique<GraphNetwork>(plan, registry);
}

}  // namespace pdegen

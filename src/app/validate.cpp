// Loading and validating a deck for any verb: the deck reader's checks, then the network plan's
// (e.g. a grid divisible by the U-Net's down-sampling), whose errors get the deck's name in front.
#include <fmt/format.h>

#include "app/verbs.hpp"
#include "core/error.hpp"
#include "nn/network_factory.hpp"

namespace pdegen::app {

ValidatedDeck validate_deck(const CliOptions& options) {
  ValidatedDeck v{load_deck(options.deck, options.overrides), {}};
  try {
    v.plan = plan_network(v.deck);
  } catch (const UserError& e) {
    throw UserError(fmt::format("{}: error: {}", options.deck, e.what()));
  }
  return v;
}

}  // namespace pdegen::app

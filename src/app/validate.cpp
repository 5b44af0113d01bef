// Loading and validating a deck for any verb: the deck reader's checks, then the network plan's
// (e.g. a grid divisible by the U-Net's down-sampling), whose errors get the deck's name in front;
// then the ranks agree that they run the same deck, and the collective watchdog starts.
#include <fmt/format.h>

#include "app/multigrid_schedule.hpp"
#include "app/stop_signal.hpp"
#include "app/verbs.hpp"
#include "config/deck_diff.hpp"
#include "core/error.hpp"
#include "core/watchdog.hpp"
#include "nn/network_factory.hpp"
#include "parallel/communicator.hpp"

namespace pdegen::app {

namespace {

// Ranks started with different decks or overrides would train different things, or wait forever
// in a collective the others never reach: one hash compared over all ranks, and on a mismatch rank
// 0 names the first differing key and rank.
void agree_on_deck(const std::string& yaml, const std::string& deck_name, const Communicator& comm) {
  const auto hash = static_cast<int64_t>(std::hash<std::string>{}(yaml) >> 1);  // >= 0: -hash fits
  const auto [lo, hi] = comm.range(hash);
  if (lo == hi) return;
  const std::vector<std::string> decks = comm.gather(yaml);
  std::string message;
  if (comm.rank() == 0) {
    int differing = 0;
    std::string first;
    for (size_t r = 1; r < decks.size(); ++r) {
      const std::vector<DeckChange> changes = deck_changes(decks[0], decks[r]);
      if (changes.empty()) continue;
      if (differing++ == 0)
        first = describe(changes.front(), "rank 0's deck", fmt::format("rank {}'s deck", r));
    }
    message = fmt::format(
        "{}: the ranks were started with different decks: {} ({} of {} ranks differ from rank 0); every rank "
        "must get the same deck and overrides",
        deck_name, first, differing, comm.size());
  }
  comm.broadcast(message);
  throw UserError(message);
}

// The network must also take the grids of the multigrid levels and of the evaluation.
void check_other_grids(const Deck& deck, const std::string& deck_name) {
  const auto check = [&](const Deck& d, const std::string& what) {
    try {
      plan_network(d);
    } catch (const UserError& e) {
      throw UserError(fmt::format("{}: error: {}: {}", deck_name, what, e.what()));
    }
  };
  if (deck.multigrid.enabled())
    for (int l = 0; l < deck.multigrid.levels; ++l)
      check(level_deck(deck, l), fmt::format("multigrid.level{} (resolution {})", l,
                                             deck.multigrid.level[static_cast<size_t>(l)].resolution));
  if (deck.multigrid.enabled() && deck.training.objective != ObjectiveKind::physics)
    throw UserError(
        fmt::format("{}: error: multigrid.levels: multigrid training needs samples at every level's "
                    "resolution, which one dataset does not have: use training.objective physics "
                    "with multigrid, or one level",
                    deck_name));
  if (deck.evaluation.resolution > 0) {
    Deck d = deck;
    d.problem = at_resolution(deck.problem, deck.evaluation.resolution);
    check(d, fmt::format("evaluation.resolution ({})", deck.evaluation.resolution));
  }
}

}  // namespace

ValidatedDeck validate_deck(const CliOptions& options) {
  ValidatedDeck v{load_deck(options.deck, options.overrides), {}};
  try {
    v.plan = plan_network(v.deck);
  } catch (const UserError& e) {
    throw UserError(fmt::format("{}: error: {}", options.deck, e.what()));
  }
  check_other_grids(v.deck, options.deck);
  const Communicator comm;
  agree_on_deck(to_yaml(v.deck), options.deck, comm);
  watchdog::start(v.deck.parallel.collective_timeout, comm.rank(), comm.size(), stop_requested);
  return v;
}

}  // namespace pdegen::app

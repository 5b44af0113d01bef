// train, predict and solve before their issues land: the deck is validated (so a job script learns
// about a bad deck now), then pdegen says plainly that the verb does not exist yet and exits 3.
#include <fmt/format.h>

#include <cstdio>

#include "app/verbs.hpp"

namespace pdegen::app {

int run_not_implemented(const CliOptions& options, int rank) {
  validate_deck(options);
  const char* coming =
      options.verb == Verb::solve ? "the reference solver issue" : "the poisson2d training issue";
  if (rank == 0)
    fmt::print(stderr, "pdegen {}: not implemented yet (coming with {}); the deck {} is valid\n",
               verb_name(options.verb), coming, options.deck);
  return 3;
}

}  // namespace pdegen::app

// What each verb does, given the parsed command line and this process's MPI rank (rank 0 prints).
// Each returns the process exit code; errors are thrown (UserError: exit 2, others: exit 1).
#pragma once

#include <string>

#include "app/cli.hpp"
#include "config/deck.hpp"
#include "nn/unet_spec.hpp"

namespace pdegen::app {

// The deck with its overrides, validated, and the network it describes; what every verb starts from.
struct ValidatedDeck {
  Deck deck;
  UNetPlan plan;
};
ValidatedDeck validate_deck(const CliOptions& options);

// pdegen check: the resolved deck, then the network's size, FLOPs and memory.
int run_check(const CliOptions& options, int rank);
// pdegen train|predict|solve until they exist: validate the deck, say so, exit 3.
int run_not_implemented(const CliOptions& options, int rank);
// pdegen --version: version, git hash, compiled backends, MPI and HDF5 libraries.
std::string version_text();

}  // namespace pdegen::app

// The training run (`pdegen train`): the loop around the Trainer with restart, evaluation,
// logging, checkpoints, the fields file and summary.json.
#pragma once

#include <string>

#include "config/deck.hpp"
#include "parallel/communicator.hpp"

namespace pdegen::app {

// Exit codes of a training run (beyond main's 0/1/2/3): the loss or the gradient became NaN/Inf (the
// last good checkpoint is kept), or a signal asked for a stop (128 + signal, as shells report it).
inline constexpr int exit_diverged = 4;

// Runs the deck's training (each visit of a multigrid cycle plans its level's network); `deck_yaml`
// is the resolved deck (stored in checkpoints and files).
int train(const Deck& deck, const std::string& deck_yaml, const Communicator& comm);

}  // namespace pdegen::app

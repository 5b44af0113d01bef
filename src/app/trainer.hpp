// The training run: the step loop over the global batch (split over the ranks), periodic
// evaluation against the reference solver, the progress line, history.csv, summary.json,
// checkpoints with exact restart, the fields file at the end, and clean stops on SIGINT/SIGTERM
// or a non-finite loss.
#pragma once

#include <string>

#include "config/deck.hpp"
#include "nn/unet_spec.hpp"
#include "parallel/communicator.hpp"

namespace pdegen::app {

// Exit codes of a training run (beyond main's 0/1/2/3): the loss became NaN/Inf (the last good
// checkpoint is kept), or a signal asked for a stop (128 + signal, as shells report it).
inline constexpr int exit_diverged = 4;

// Runs the deck's training; `deck_yaml` is the resolved deck (stored in checkpoints and files).
int train(const Deck& deck, const UNetPlan& plan, const std::string& deck_yaml, const Communicator& comm);

}  // namespace pdegen::app

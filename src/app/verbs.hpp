// What each verb does, given the parsed command line and this process's MPI rank (rank 0 prints).
// Each returns the process exit code; errors are thrown (UserError: exit 2, others: exit 1).
#pragma once

#include <string>

#include "app/cli.hpp"
#include "config/deck.hpp"
#include "nn/network_plan.hpp"

namespace pdegen::app {

// The deck with its overrides, validated, and the network it describes; what every verb starts from.
struct ValidatedDeck {
  Deck deck;
  NetworkPlan plan;
};
ValidatedDeck validate_deck(const CliOptions& options);

// pdegen check: the resolved deck, then the network's size, FLOPs and memory.
int run_check(const CliOptions& options, int rank);
// pdegen train: the training run (app/train.hpp).
int run_train(const CliOptions& options);
// pdegen solve: reference solutions of the evaluation samples.
int run_solve(const CliOptions& options);
// pdegen dataset: samples with their reference solutions, as HDF5 shards for training from data.
int run_dataset(const CliOptions& options);
// pdegen predict: a trained generator on new samples against the reference.
int run_predict(const CliOptions& options);

// pdegen --version: version, git hash, compiled backends, MPI and HDF5 libraries.
std::string version_text();

}  // namespace pdegen::app

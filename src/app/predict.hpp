// pdegen predict, shared by its two ways of running: the whole domain at once (predict.cpp) and in
// tiles (predict_tiled.cpp, --tile N).
#pragma once

#include <filesystem>
#include <memory>

#include "app/evaluation.hpp"
#include "app/model.hpp"
#include "app/run_files.hpp"
#include "app/verbs.hpp"
#include "parallel/communicator.hpp"
#include "physics/problem.hpp"

namespace pdegen::app {

// What both ways start from: the deck, the problem, the generator restored from --checkpoint.
struct PredictRun {
  ValidatedDeck v;
  Communicator comm;
  std::unique_ptr<Problem> problem;
  std::unique_ptr<Model> model;
  int64_t checkpoint_step = 0;
  std::filesystem::path dir;  // output.dir, created
};

// The first entries of predict.json, common to both ways.
JsonObject predict_json_head(const CliOptions& options, const PredictRun& run, int64_t samples);

// rel_l2_mean, rel_l2_max and rel_l2 (per sample) of predict.json.
void add_errors(JsonObject& json, const ErrorSummary& error);

// pdegen predict --tile N: the samples in tiles over the ranks (tiled_inference.hpp), written to
// predict.h5 tile by tile.
int predict_in_tiles(const CliOptions& options, PredictRun& run);

}  // namespace pdegen::app

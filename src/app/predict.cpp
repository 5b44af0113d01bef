// pdegen predict: a trained generator (--checkpoint) on new samples, never seen in training or
// evaluation, against the reference solver: predict.h5 (+ .xdmf) with the coefficient, the
// prediction, the reference and the error, and predict.json with rel_l2 per sample, mean and max.
// This file runs the whole domain at once; --tile N goes to predict_tiled.cpp.
#include "app/predict.hpp"

#include <spdlog/spdlog.h>

#include "app/evaluation.hpp"
#include "app/run_directory.hpp"
#include "core/timer.hpp"
#include "io/atomic_file.hpp"
#include "nn/network_plan.hpp"

namespace pdegen::app {

namespace {

PredictRun load(const CliOptions& options) {
  PredictRun run{validate_deck(options), Communicator(), nullptr, nullptr, 0, {}};
  const Deck& deck = run.v.deck;
  check_precision_runs_here(deck.precision, Device::cpu);
  use_conv_algorithm(deck.cpu.conv_algorithm);
  run.problem = make_problem(deck.problem, deck.evaluation);
  run.model = build_model(run.v.plan, deck.training.seed);
  const CheckpointData data = read_checkpoint(options.checkpoint);
  check_prediction_deck(data.deck_yaml, to_yaml(deck), options.checkpoint);
  restore_model(*run.model, data, options.checkpoint, nullptr);
  run.checkpoint_step = data.step;
  run.dir = deck.output.dir;
  if (run.comm.rank() == 0) std::filesystem::create_directories(run.dir);
  run.comm.barrier();
  return run;
}

}  // namespace

void add_errors(JsonObject& json, const ErrorSummary& error) {
  json.add("rel_l2_mean", error.mean).add("rel_l2_max", error.max).add("rel_l2", error.per_sample);
}

JsonObject predict_json_head(const CliOptions& options, const PredictRun& run, int64_t samples) {
  JsonObject j;
  j.add("status", "completed")
      .add("checkpoint", options.checkpoint)
      .add("checkpoint_step", run.checkpoint_step)
      .add("samples", samples)
      .add("precision", std::string(dtype_name(run.v.deck.precision)))
      .add("receptive_field_halo", receptive_field(run.v.plan).halo());
  return j;
}

int run_predict(const CliOptions& options) {
  PredictRun run = load(options);
  if (options.tile > 0) return predict_in_tiles(options, run);
  const Deck& deck = run.v.deck;
  const Communicator& comm = run.comm;
  const Problem& problem = *run.problem;
  const bool reference = !options.no_reference;

  Timer t;
  const SampleSet set = make_sample_set(problem, deck.training.seed, predict_index_base,
                                        deck.evaluation.samples, comm, reference);
  // The network alone, timed apart from the reference solves above: what a surrogate costs.
  Timer network;
  const Tensor pred = set.indices.empty()
                          ? Tensor::empty(problem.batch_shape(0))
                          : predict(*run.model, problem, set.input, deck.precision, deck.training.batch_size);
  const double network_seconds = comm.max(network.seconds());
  const ErrorSummary error = reference ? summarize_error(problem, set, pred, comm, true) : ErrorSummary{};
  const std::string file = (run.dir / "predict.h5").string();
  Timer write;
  write_set_fields(file, problem, set, set.total, &pred, to_yaml(deck), comm);
  const double write_seconds = comm.max(write.seconds()), rss = comm.max(peak_rss_mb());
  if (comm.rank() != 0) return 0;
  JsonObject j = predict_json_head(options, run, set.total);
  if (reference) add_errors(j, error);
  j.add("tiles", 1)
      .add("tile", 0)
      .add("halo", 0)
      .add("peak_rss_mb", rss)
      .add("network_seconds", network_seconds)
      .add("write_seconds", write_seconds)
      .add("seconds", t.seconds())
      .add("file", file);
  write_text_file_atomically((run.dir / "predict.json").string(), j.dump() + "\n");
  if (reference)
    spdlog::info(
        "predict: {} new samples, rel_l2 mean {:.3f}% max {:.3f}% (checkpoint {} at step {}); wrote {}",
        set.total, 100 * error.mean, 100 * error.max, options.checkpoint, run.checkpoint_step, file);
  else
    spdlog::info("predict: {} new samples, no reference (checkpoint {} at step {}); wrote {}", set.total,
                 options.checkpoint, run.checkpoint_step, file);
  return 0;
}

}  // namespace pdegen::app

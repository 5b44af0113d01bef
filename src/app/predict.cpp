// pdegen predict: a trained generator (--checkpoint) on new samples, never seen in training or
// evaluation, against the reference solver: predict.h5 (+ .xdmf) with the coefficient, the
// prediction, the reference and the error, and predict.json with rel_l2 per sample, mean and max.
#include <spdlog/spdlog.h>

#include <filesystem>

#include "app/evaluation.hpp"
#include "app/run_directory.hpp"
#include "app/run_files.hpp"
#include "app/verbs.hpp"
#include "core/timer.hpp"
#include "io/atomic_file.hpp"

namespace pdegen::app {

int run_predict(const CliOptions& options) {
  const ValidatedDeck v = validate_deck(options);
  const Deck& deck = v.deck;
  const Communicator comm;
  check_precision_runs_here(deck.precision, Device::cpu);
  use_conv_algorithm(deck.cpu.conv_algorithm);
  const auto problem = make_problem(deck.problem, deck.evaluation);
  auto model = build_model(v.plan, deck.training.seed);
  const CheckpointData data = read_checkpoint(options.checkpoint);
  check_prediction_deck(data.deck_yaml, to_yaml(deck), options.checkpoint);
  restore_model(*model, data, options.checkpoint, nullptr);
  const std::filesystem::path dir = deck.output.dir;
  if (comm.rank() == 0) std::filesystem::create_directories(dir);
  comm.barrier();

  Timer t;
  const SampleSet set =
      make_sample_set(*problem, deck.training.seed, predict_index_base, deck.evaluation.samples, comm);
  // The network alone, timed apart from the reference solves above: what a surrogate costs.
  Timer network;
  const Tensor pred = set.indices.empty()
                          ? set.reference  // this rank's empty share, of the solution's shape
                          : predict(*model, *problem, set.input, deck.precision, deck.training.batch_size);
  const double network_seconds = network.seconds();
  const ErrorSummary error = summarize_error(*problem, set, pred, comm, /*per_sample=*/true);
  const std::string file = (dir / "predict.h5").string();
  write_set_fields(file, *problem, set, set.total, &pred, to_yaml(deck), comm);
  if (comm.rank() == 0) {
    JsonObject j;
    j.add("status", "completed")
        .add("checkpoint", options.checkpoint)
        .add("checkpoint_step", data.step)
        .add("samples", set.total)
        .add("rel_l2_mean", error.mean)
        .add("rel_l2_max", error.max)
        .add("rel_l2", error.per_sample)
        .add("precision", std::string(dtype_name(deck.precision)))
        .add("network_seconds", network_seconds)
        .add("seconds", t.seconds())
        .add("file", file);
    write_text_file_atomically((dir / "predict.json").string(), j.dump() + "\n");
    spdlog::info(
        "predict: {} new samples, rel_l2 mean {:.3f}% max {:.3f}% (checkpoint {} at step {}); wrote {}",
        set.total, 100 * error.mean, 100 * error.max, options.checkpoint, data.step, file);
  }
  return 0;
}

}  // namespace pdegen::app

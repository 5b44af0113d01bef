// pdegen predict: a trained generator (--checkpoint) on new samples, never seen in training or
// evaluation, against the reference solver: predict.h5 (+ .xdmf) with the coefficient, the
// prediction, the reference and the error, and predict.json with rel_l2 per sample, mean and max.
#include <spdlog/spdlog.h>

#include <filesystem>

#include "app/model.hpp"
#include "app/run_files.hpp"
#include "app/verbs.hpp"
#include "core/timer.hpp"
#include "io/atomic_file.hpp"
#include "io/fields_file.hpp"
#include "parallel/communicator.hpp"
#include "physics/problem.hpp"

namespace pdegen::app {

// Global indices of prediction samples: their own range, after the evaluation samples'.
inline constexpr uint64_t predict_index_base = uint64_t{2} << 40;

int run_predict(const CliOptions& options) {
  const ValidatedDeck v = validate_deck(options);
  const Deck& deck = v.deck;
  const Communicator comm;
  const auto problem = make_problem(deck.problem);
  auto model = build_model(v.plan, deck.training.seed);
  const CheckpointData data = read_checkpoint(options.checkpoint);
  restore_model(*model, data, options.checkpoint, nullptr);

  const int64_t total = deck.evaluation.samples;
  const Share share = share_of(total, comm.rank(), comm.size());
  std::vector<uint64_t> indices;
  for (int64_t e = share.begin; e < share.end; ++e)
    indices.push_back(predict_index_base + static_cast<uint64_t>(e));
  const std::filesystem::path dir = deck.output.dir;
  if (comm.rank() == 0) std::filesystem::create_directories(dir);
  comm.barrier();

  Tensor input, pred, ref, err;
  std::vector<double> rel(static_cast<size_t>(total), 0.0);
  Timer t;
  if (!indices.empty()) {
    problem->sample(deck.training.seed, indices, input);
    pred = problem->lift(model->net->forward(input, Mode::eval));
    ref = problem->reference_solution(input, deck.evaluation.solver_tolerance, nullptr);
    err = difference(pred, ref);
    const auto local = relative_l2(pred, ref);
    for (size_t i = 0; i < local.size(); ++i) rel[static_cast<size_t>(share.begin) + i] = local[i];
  } else {
    input = pred = ref = err = Tensor::empty(problem->batch_shape(0));
  }
  comm.allreduce_sum(rel.data(), total);  // each slot is written by one rank only
  double mean = 0, mx = 0;
  for (double r : rel) mean += r, mx = std::max(mx, r);
  mean /= std::max<int64_t>(1, total);

  FieldsMetadata meta{std::string(problem->name()), problem->origin(), problem->spacing(), to_yaml(deck)};
  FieldsWriter writer((dir / "predict.h5").string(), meta, comm.comm(), total, share.begin, share.end);
  writer.add_field(problem->input_name(), input);
  writer.add_field("u_pred", pred);
  writer.add_field("u_ref", ref);
  writer.add_field("error", err);
  writer.set_sample_index(std::vector<int64_t>(indices.begin(), indices.end()));
  writer.write();
  if (comm.rank() == 0) {
    std::string per_sample;
    for (size_t i = 0; i < rel.size(); ++i) per_sample += fmt::format("{}{:.6e}", i ? ", " : "", rel[i]);
    JsonObject j;
    j.add("status", "completed")
        .add("checkpoint", options.checkpoint)
        .add("checkpoint_step", data.step)
        .add("samples", total)
        .add("rel_l2_mean", mean)
        .add("rel_l2_max", mx)
        .add("rel_l2", "[" + per_sample + "]")
        .add("seconds", t.seconds())
        .add("file", writer.path());
    write_text_file_atomically((dir / "predict.json").string(), j.dump() + "\n");
    spdlog::info(
        "predict: {} new samples, rel_l2 mean {:.3f}% max {:.3f}% (checkpoint {} at step {}); wrote {}",
        total, 100 * mean, 100 * mx, options.checkpoint, data.step, writer.path());
  }
  return 0;
}

}  // namespace pdegen::app

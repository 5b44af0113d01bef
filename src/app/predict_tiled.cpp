// pdegen predict --tile N: the samples cut into tiles (app/tiled_inference.hpp), the tiles of all
// samples shared by the ranks, each tile's input and prediction written to predict.h5 as it comes
// (io/tiled_fields_file.hpp), so no rank holds a whole field. With the reference (the default),
// each rank then solves its own samples whole, reads their predictions back and writes u_ref and
// the error: the reference solver needs the whole domain anyway; --no-reference skips it.
#include <spdlog/spdlog.h>

#include "app/evaluation.hpp"
#include "app/predict.hpp"
#include "app/tiled_inference.hpp"
#include "core/timer.hpp"
#include "io/atomic_file.hpp"
#include "io/tiled_fields_file.hpp"

namespace pdegen::app {

namespace {

void log_plan(const TiledPredictor& p, int64_t samples, int64_t batch, int ranks) {
  const TilePlan& plan = p.plan();
  spdlog::info(
      "predict in tiles: {} sample(s) x {} tiles ({} per axis) of {} nodes, halo {} (receptive field {}, "
      "alignment {}), windows of {} nodes, {} per forward, over {} rank(s)",
      samples, plan.size(), fmt::join(plan.tiles_per_axis(), "x"), plan.tile(), plan.halo(),
      p.receptive_halo(), p.alignment(), fmt::join(plan.window(), "x"), batch, ranks);
}

void warn_short_halo(const TiledPredictor& p, const HaloCost& cost) {
  spdlog::warn(
      "--halo {} is below the network's receptive field ({} nodes per side): tiles differ from whole-domain "
      "inference. Measured on the first tile batch ({} tiles) against full-halo tiles: max abs difference "
      "{:.3e}, relative L2 {:.3e}",
      p.plan().halo(), p.receptive_halo(), cost.tiles, cost.max_abs, cost.rel_l2());
}

// Each rank's own samples against the reference: solved whole, the predictions read back from the
// file, u_ref and the error written.
ErrorSummary compare_with_reference(const PredictRun& run, TiledFieldsWriter& writer) {
  const Problem& problem = *run.problem;
  const SampleSet set = make_sample_set(problem, run.v.deck.training.seed, predict_index_base,
                                        run.v.deck.evaluation.samples, run.comm);
  writer.flush();
  const std::vector<int64_t> grid = sample_grid(problem);
  const GridBox whole{std::vector<int64_t>(grid.size(), 0), grid};
  Tensor pred = Tensor::empty(problem.batch_shape(set.share.count()));
  for (int64_t s = 0; s < set.share.count(); ++s) {
    const int64_t e = set.share.begin + s;
    Tensor row = pred.slice_batch(s, s + 1);
    row.copy_from(writer.read_box("u_pred", e, whole));
    const Tensor ref = set.reference.slice_batch(s, s + 1);
    writer.write_box("u_ref", e, whole, ref);
    writer.write_box("error", e, whole, difference(row, ref));
  }
  return summarize_error(problem, set, pred, run.comm, true);
}

struct TiledOutcome {
  HaloCost halo_cost;
  ErrorSummary error;
  double network_seconds = 0, write_seconds = 0;
};

TiledOutcome predict_and_write(const CliOptions& options, const PredictRun& run, TiledPredictor& predictor,
                               const std::string& file) {
  const Deck& deck = run.v.deck;
  const Problem& problem = *run.problem;
  const int64_t samples = deck.evaluation.samples;
  std::vector<uint64_t> indices;
  for (int64_t e = 0; e < samples; ++e) indices.push_back(predict_index_base + static_cast<uint64_t>(e));
  std::vector<std::string> names{problem.input_name(), "u_pred"};
  if (!options.no_reference) names.insert(names.end(), {"u_ref", "error"});
  TiledOutcome out;
  Timer create;
  TiledFieldsWriter writer(file, fields_metadata(problem, to_yaml(deck)), run.comm.comm(),
                           sample_grid(problem), names, std::vector<int64_t>(indices.begin(), indices.end()));
  out.write_seconds = create.seconds();
  const Share items = share_of(samples * predictor.plan().size(), run.comm.rank(), run.comm.size());
  const auto sink = [&](int64_t e, const GridBox& box, const Tensor& u, const Tensor& input) {
    const ScopedTimer timer(out.write_seconds);
    writer.write_box(problem.input_name(), e, box, channel0_view(input, 0));
    writer.write_box("u_pred", e, box, u);
  };
  out.halo_cost = predictor.run(deck.training.seed, indices, items, sink).combine(run.comm);
  out.network_seconds = run.comm.max(predictor.network_seconds());
  if (!options.no_reference) out.error = compare_with_reference(run, writer);
  Timer finish;
  writer.finish();
  out.write_seconds = run.comm.max(out.write_seconds + finish.seconds());
  return out;
}

}  // namespace

int predict_in_tiles(const CliOptions& options, PredictRun& run) {
  Timer t;
  const Deck& deck = run.v.deck;
  const TileRequest request{options.tile, options.halo,
                            options.tile_batch > 0 ? options.tile_batch : deck.training.batch_size};
  TiledPredictor predictor(deck.network, run.v.plan, *run.problem, *run.model, request, deck.precision);
  const bool root = run.comm.rank() == 0;
  if (root) log_plan(predictor, deck.evaluation.samples, request.batch, run.comm.size());
  const std::string file = (run.dir / "predict.h5").string();
  const TiledOutcome out = predict_and_write(options, run, predictor, file);
  if (root && predictor.halo_is_short()) warn_short_halo(predictor, out.halo_cost);
  const double rss = run.comm.max(peak_rss_mb());
  if (!root) return 0;

  const TilePlan& plan = predictor.plan();
  JsonObject j = predict_json_head(options, run, deck.evaluation.samples);
  if (!options.no_reference) add_errors(j, out.error);
  j.add("tiles", plan.size())
      .add("tile", plan.tile())
      .add("halo", plan.halo())
      .add("window", fmt::format("{}", fmt::join(plan.window(), "x")))
      .add("tile_batch", request.batch);
  if (predictor.halo_is_short())
    j.add("halo_error_max_abs", out.halo_cost.max_abs).add("halo_error_rel_l2", out.halo_cost.rel_l2());
  j.add("peak_rss_mb", rss)
      .add("network_seconds", out.network_seconds)
      .add("write_seconds", out.write_seconds)
      .add("seconds", t.seconds())
      .add("file", file);
  write_text_file_atomically((run.dir / "predict.json").string(), j.dump() + "\n");
  if (options.no_reference)
    spdlog::info("predict: {} new samples in {} tiles each, no reference; wrote {}", deck.evaluation.samples,
                 plan.size(), file);
  else
    spdlog::info("predict: {} new samples in {} tiles each, rel_l2 mean {:.3f}% max {:.3f}%; wrote {}",
                 deck.evaluation.samples, plan.size(), 100 * out.error.mean, 100 * out.error.max, file);
  return 0;
}

}  // namespace pdegen::app

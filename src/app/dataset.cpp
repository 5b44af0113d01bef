// pdegen dataset: samples of the deck's problem with their classical solutions, for training from
// data, as shards of HDF5 files in the fields-file layout (the problem's input field and u_ref, one
// chunk per sample, /sample_index, the deck), each written by all ranks at once.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <vector>

#include "app/evaluation.hpp"
#include "app/run_files.hpp"
#include "app/verbs.hpp"
#include "core/error.hpp"
#include "core/timer.hpp"
#include "io/atomic_file.hpp"
#include "io/tiled_fields_file.hpp"

namespace pdegen::app {

namespace {

// The XDMF of a shard shows its first samples in ParaView; a view per sample of thousands would
// only bloat the file.
constexpr int64_t xdmf_samples = 16;

// Without --shard-samples: as many samples as 256 MiB of fields (input and solution) hold.
int64_t default_shard_samples(const Problem& problem, int64_t total) {
  const int64_t bytes = 2 * 4 * problem.sample_shape().numel();
  return std::clamp<int64_t>((int64_t{256} << 20) / bytes, 1, total);
}

struct Shard {
  std::string file;
  uint64_t first_index = 0;
  int64_t samples = 0;
  double solve_seconds = 0, write_seconds = 0;
};

// Samples first_index + [0, count) solved over the ranks and written to `file`, each rank its own.
Shard write_shard(const Problem& problem, const ValidatedDeck& v, const std::string& file,
                  uint64_t first_index, int64_t count, const Communicator& comm) {
  Shard shard{file, first_index, count};
  Timer solve;
  const SampleSet set = make_sample_set(problem, v.deck.training.seed, first_index, count, comm);
  shard.solve_seconds = comm.max(solve.seconds());
  Timer write;
  std::vector<int64_t> index(static_cast<size_t>(count));
  std::iota(index.begin(), index.end(), static_cast<int64_t>(first_index));
  const std::vector<int64_t> grid = sample_grid(problem);
  const GridBox whole{std::vector<int64_t>(grid.size(), 0), grid};
  TiledFieldsWriter writer(file, fields_metadata(problem, to_yaml(v.deck)), comm.comm(), grid,
                           {problem.input_name(), "u_ref"}, index, FieldsLayout{true, xdmf_samples});
  const Tensor input = to_channel_block(set.input, 1), reference = to_channel_block(set.reference, 1);
  for (int64_t r = 0; r < set.share.count(); ++r) {
    writer.write_box(problem.input_name(), set.share.begin + r, whole, channel0_view(input, r));
    writer.write_box("u_ref", set.share.begin + r, whole, channel0_view(reference, r));
  }
  writer.finish();
  shard.write_seconds = comm.max(write.seconds());
  return shard;
}

JsonObject shard_json(const Shard& s) {
  JsonObject j;
  j.add("file", std::filesystem::path(s.file).filename().string())
      .add("first_index", static_cast<int64_t>(s.first_index))
      .add("samples", s.samples)
      .add("solve_seconds", s.solve_seconds)
      .add("write_seconds", s.write_seconds);
  return j;
}

}  // namespace

int run_dataset(const CliOptions& options) {
  const ValidatedDeck v = validate_deck(options);
  if (v.deck.problem.is_inverse())
    throw UserError(
        fmt::format("{}: problem.map inverse: generate the dataset with the forward map (map: forward); "
                    "its files (log_nu, u_ref) serve both maps: the inverse one reads u_ref as its "
                    "input and log_nu as its target",
                    options.deck));
  const Communicator comm;
  const auto problem = make_problem(v.deck.problem, v.deck.evaluation);
  const std::filesystem::path dir = v.deck.output.dir;
  if (comm.rank() == 0) std::filesystem::create_directories(dir);
  comm.barrier();
  const int64_t total = options.samples;
  const int64_t per_shard = options.shard_samples > 0 ? std::min(options.shard_samples, total)
                                                      : default_shard_samples(*problem, total);
  const uint64_t base = dataset_index_base + static_cast<uint64_t>(options.first_index);
  spdlog::info(
      "dataset: {} samples of {} on the {} grid (global indices {} to {}) in shards of {}, over {} rank(s)",
      total, problem->name(), grid_text(v.deck.problem), base, base + static_cast<uint64_t>(total) - 1,
      per_shard, comm.size());
  Timer t;
  std::vector<JsonObject> shards;
  for (int64_t first = 0, k = 0; first < total; first += per_shard, ++k) {
    const int64_t count = std::min(per_shard, total - first);
    const std::string file = (dir / fmt::format("dataset_{:05d}.h5", k)).string();
    const Shard s = write_shard(*problem, v, file, base + static_cast<uint64_t>(first), count, comm);
    spdlog::info("dataset: {} ({} samples) solved in {:.2f} s, written in {:.2f} s", file, count,
                 s.solve_seconds, s.write_seconds);
    shards.push_back(shard_json(s));
  }
  const double seconds = t.seconds();
  if (comm.rank() == 0) {
    JsonObject j;
    j.add("status", "completed")
        .add("pde", std::string(problem->name()))
        .add("samples", total)
        .add("first_index", options.first_index)
        .add("shard_samples", per_shard)
        .add("input_field", problem->input_name())
        .add("solution_field", "u_ref")
        .add("index_base", static_cast<int64_t>(base))
        .add("shards", shards)
        .add("seconds", seconds)
        .add("samples_per_second", static_cast<double>(total) / std::max(seconds, 1e-9));
    write_text_file_atomically((dir / "dataset.json").string(), j.dump() + "\n");
    spdlog::info("dataset: {} samples in {} file(s) in {:.1f} s ({:.0f} samples/s); wrote {}", total,
                 shards.size(), seconds, total / std::max(seconds, 1e-9), (dir / "dataset.json").string());
  }
  return 0;
}

}  // namespace pdegen::app

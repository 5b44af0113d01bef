// pdegen solve: the classical reference solutions of the deck's evaluation samples, written as a
// fields file (reference.h5 + .xdmf) with their coefficients, and the solver's statistics.
#include <spdlog/spdlog.h>

#include <filesystem>

#include "app/run_files.hpp"
#include "app/verbs.hpp"
#include "core/timer.hpp"
#include "io/atomic_file.hpp"
#include "io/fields_file.hpp"
#include "parallel/communicator.hpp"
#include "physics/problem.hpp"

namespace pdegen::app {

int run_solve(const CliOptions& options) {
  const ValidatedDeck v = validate_deck(options);
  const Deck& deck = v.deck;
  const Communicator comm;
  const auto problem = make_problem(deck.problem);
  const int64_t total = deck.evaluation.samples;
  const Share share = share_of(total, comm.rank(), comm.size());
  std::vector<uint64_t> indices;
  for (int64_t e = share.begin; e < share.end; ++e)
    indices.push_back(eval_index_base + static_cast<uint64_t>(e));
  const std::filesystem::path dir = deck.output.dir;
  if (comm.rank() == 0) std::filesystem::create_directories(dir);
  comm.barrier();

  Tensor input, ref;
  std::vector<int> iterations;
  Timer t;
  if (!indices.empty()) {
    problem->sample(deck.training.seed, indices, input);
    ref = problem->reference_solution(input, deck.evaluation.solver_tolerance, &iterations);
  } else {
    input = ref = Tensor::empty(problem->batch_shape(0));
  }
  const double seconds = comm.max(t.seconds());
  int max_it = 0;
  for (int it : iterations) max_it = std::max(max_it, it);
  max_it = static_cast<int>(comm.max(max_it));

  FieldsMetadata meta{std::string(problem->name()), problem->origin(), problem->spacing(), to_yaml(deck)};
  FieldsWriter writer((dir / "reference.h5").string(), meta, comm.comm(), total, share.begin, share.end);
  writer.add_field(problem->input_name(), input);
  writer.add_field("u_ref", ref);
  writer.set_sample_index(std::vector<int64_t>(indices.begin(), indices.end()));
  writer.write();
  if (comm.rank() == 0) {
    JsonObject j;
    j.add("status", "completed")
        .add("samples", total)
        .add("resolution", deck.problem.resolution)
        .add("tolerance", deck.evaluation.solver_tolerance)
        .add("max_iterations", max_it)
        .add("seconds", seconds)
        .add("seconds_per_sample", seconds * comm.size() / std::max<int64_t>(1, total))
        .add("file", writer.path());
    write_text_file_atomically((dir / "solve.json").string(), j.dump() + "\n");
    spdlog::info(
        "solve: {} reference solutions of {} at {}^2 to relative residual {:.0e} in {:.2f} s (at most {} "
        "iterations); wrote {} and {}",
        total, problem->name(), deck.problem.resolution, deck.evaluation.solver_tolerance, seconds, max_it,
        writer.path(), writer.xdmf_path());
  }
  return 0;
}

}  // namespace pdegen::app

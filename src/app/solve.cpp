// pdegen solve: the classical reference solutions of the deck's evaluation samples, written as a
// fields file (reference.h5 + .xdmf) with their coefficients, and the solver's statistics.
#include <spdlog/spdlog.h>

#include <filesystem>

#include "app/evaluation.hpp"
#include "app/run_files.hpp"
#include "app/verbs.hpp"
#include "core/timer.hpp"
#include "io/atomic_file.hpp"

namespace pdegen::app {

int run_solve(const CliOptions& options) {
  const ValidatedDeck v = validate_deck(options);
  const Deck& deck = v.deck;
  const Communicator comm;
  const auto problem = make_problem(deck.problem, deck.evaluation);
  const std::filesystem::path dir = deck.output.dir;
  if (comm.rank() == 0) std::filesystem::create_directories(dir);
  comm.barrier();

  Timer t;
  const SampleSet set =
      make_sample_set(*problem, deck.training.seed, eval_index_base, deck.evaluation.samples, comm);
  const double seconds = comm.max(t.seconds());
  int max_it = 0;
  for (int it : set.report.iterations) max_it = std::max(max_it, it);
  max_it = static_cast<int>(comm.max(max_it));

  const std::string file = (dir / "reference.h5").string();
  const std::string xdmf = write_set_fields(file, *problem, set, set.total, nullptr, to_yaml(deck), comm);
  if (comm.rank() == 0) {
    JsonObject j;
    j.add("status", "completed")
        .add("samples", set.total)
        .add("resolution", deck.problem.resolution)
        .add("tolerance", deck.evaluation.solver_tolerance)
        .add("max_iterations", max_it)
        .add("seconds", seconds)
        .add("seconds_per_sample", seconds * comm.size() / std::max<int64_t>(1, set.total))
        .add("file", file);
    write_text_file_atomically((dir / "solve.json").string(), j.dump() + "\n");
    spdlog::info(
        "solve: {} reference solutions of {} on the {} grid to relative residual {:.0e} in {:.2f} s (at "
        "most {} iterations); wrote {} and {}",
        set.total, problem->name(), grid_text(deck.problem), deck.evaluation.solver_tolerance, seconds,
        max_it, file, xdmf);
  }
  return 0;
}

}  // namespace pdegen::app

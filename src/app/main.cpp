// pdegen's entry point: MPI up, the command line parsed, logging set, the verb run. Every error ends
// all ranks through abort_all() with one exit code: 0 success, 1 runtime failure, 2 usage or deck
// error (the message only, no source location: the user fixes their input), 3 not implemented.
#include <fmt/format.h>
#include <mpi.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <new>
#include <string>
#include <vector>

#include "app/cli.hpp"
#include "app/verbs.hpp"
#include "core/denormals.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "parallel/communicator.hpp"
#include "parallel/launcher.hpp"
#include "parallel/threads.hpp"

namespace {

int run(const pdegen::app::CliOptions& options, int rank, int size) {
  using pdegen::app::Verb;
  if (options.version) {
    const std::string text = pdegen::app::version_text();
    if (rank == 0) std::fputs(text.c_str(), stdout);
    return 0;
  }
  if (options.help) {
    if (rank == 0) std::fputs(pdegen::app::help_text(options.verb).c_str(), stdout);
    return 0;
  }
  // Before any file is touched or oneDNN primitive exists; check computes nothing.
  if (options.verb == Verb::train || options.verb == Verb::predict || options.verb == Verb::solve ||
      options.verb == Verb::dataset) {
    pdegen::check_launcher_matches_world(size, pdegen::mpi_library_version(),
                                         [](const char* name) { return std::getenv(name); });
    pdegen::set_threads_per_rank(pdegen::Communicator());
    pdegen::flush_denormals_in_every_thread();
  }
  switch (options.verb) {
    case Verb::check:
      return pdegen::app::run_check(options, rank);
    case Verb::train:
      return pdegen::app::run_train(options);
    case Verb::predict:
      return pdegen::app::run_predict(options);
    case Verb::solve:
      return pdegen::app::run_solve(options);
    case Verb::dataset:
      return pdegen::app::run_dataset(options);
    case Verb::none:
      break;
  }
  return 2;  // parse_cli() lets no verb-less command line through
}

// Deck and usage errors are the same on every rank, but a rank-local one (a file missing on one
// node) must not be lost: every rank prints, ranks other than 0 say who they are.
void print_user_error(const std::string& message, int rank, int size) {
  const std::string prefix = size > 1 && rank > 0 ? fmt::format("[rank {}] ", rank) : "";
  std::string text;
  size_t start = 0;
  while (start <= message.size()) {
    const size_t end = std::min(message.find('\n', start), message.size());
    text += prefix + message.substr(start, end - start) + '\n';
    start = end + 1;
  }
  std::fputs(text.c_str(), stderr);
  std::fflush(stderr);
}

// Usually the deck's size, not a bug: say which keys set it.
[[noreturn]] void out_of_memory(const std::string& verb, const std::string& what) {
  spdlog::error(
      "out of memory while running '{}' on this rank ({}): lower problem.resolution, training.batch_size or "
      "network.base_channels, raise training.micro_batches, or use more ranks ('pdegen check DECK' "
      "estimates the memory)",
      verb, what);
  pdegen::abort_all(1);
}

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  pdegen::LogOptions log;
  log.rank = rank;
  log.size = size;
  pdegen::init_logging(log);
  std::string verb = "pdegen";  // what was running, for the out-of-memory message
  try {
    const auto options = pdegen::app::parse_cli(std::vector<std::string>(argv + 1, argv + argc));
    verb = fmt::format("pdegen {}", pdegen::app::verb_name(options.verb));
    log.all_ranks = options.log_all_ranks;
    log.level = options.log_level;
    pdegen::init_logging(log);
    if (provided < MPI_THREAD_MULTIPLE)
      spdlog::warn(
          "the MPI library provides thread level {} < MPI_THREAD_MULTIPLE ({}): gradient reduction cannot "
          "overlap backward from a helper thread",
          provided, MPI_THREAD_MULTIPLE);
    const int code = run(options, rank, size);
    spdlog::default_logger()->flush();
    // After a stop signal the launcher's exit status is racy when the ranks finalize (Hydra was seen
    // to report 0 or 128+sig); an abort reports 128+sig every time. Everything is written by now.
    if (code > 128 && size > 1) {
      MPI_Barrier(MPI_COMM_WORLD);
      pdegen::abort_all(code);
    }
    MPI_Finalize();
    return code;
  } catch (const pdegen::NotImplemented& e) {
    print_user_error(e.what(), rank, size);
    pdegen::abort_all(3);
  } catch (const pdegen::UserError& e) {
    print_user_error(e.what(), rank, size);
    pdegen::abort_all(2);
  } catch (const pdegen::OutOfMemory& e) {
    out_of_memory(verb, e.what());
  } catch (const pdegen::Error& e) {
    spdlog::error("{}", e.what());
    pdegen::abort_all(1);
  } catch (const std::bad_alloc&) {
    out_of_memory(verb, "an allocation failed");
  } catch (const std::exception& e) {
    spdlog::error("unexpected error: {}", e.what());
    pdegen::abort_all(1);
  }
}

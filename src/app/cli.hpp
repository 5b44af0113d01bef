// The command line: `pdegen VERB DECK [key.path=value ...] [options]`, `pdegen --version`,
// `pdegen [VERB] --help`. Parsing is pure (no MPI, no output) so main() decides who prints.
#pragma once

#include <spdlog/common.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pdegen::app {

enum class Verb { none, train, predict, solve, dataset, check };

struct CliOptions {
  Verb verb = Verb::none;
  bool help = false;     // --help / -h / `pdegen help [VERB]`: help for `verb` (or general)
  bool version = false;  // --version
  std::string deck;
  std::vector<std::string> overrides;  // "key.path=value", in command-line order
  spdlog::level::level_enum log_level = spdlog::level::info;
  bool log_all_ranks = false;
  std::string checkpoint;  // predict: --checkpoint FILE
  std::string restart;     // train: --restart FILE (also added to `overrides` as training.restart)
  bool verbose = false;    // check: --verbose prints the layer table
  // predict on large domains: --tile N (interior nodes per axis; 0: the whole domain at once),
  // --halo auto|N (-1: auto), --tile-batch N (0: training.batch_size), --no-reference.
  int64_t tile = 0;
  int64_t halo = -1;
  int64_t tile_batch = 0;
  bool no_reference = false;
  // dataset: --samples N (required), --shard-samples N (0: about 256 MiB of fields per file),
  // --first-index I (the first sample, relative to the dataset range).
  int64_t samples = 0;
  int64_t shard_samples = 0;
  int64_t first_index = 0;
};

// `args` without the program name. Throws UserError ("pdegen: error: ...", exit code 2) on an
// unknown verb or option, a missing DECK or option value, or an option the verb does not take.
CliOptions parse_cli(const std::vector<std::string>& args);

std::string_view verb_name(Verb verb);
// Help for one verb, or the general help for Verb::none.
std::string help_text(Verb verb);

}  // namespace pdegen::app

// Command-line parsing and help texts (see cli.hpp).
#include "app/cli.hpp"

#include <fmt/format.h>

#include <array>
#include <optional>

#include "config/suggest.hpp"
#include "core/error.hpp"

namespace pdegen::app {

namespace {

constexpr std::array<std::pair<Verb, std::string_view>, 5> verbs = {{
    {Verb::train, "train"},
    {Verb::predict, "predict"},
    {Verb::solve, "solve"},
    {Verb::dataset, "dataset"},
    {Verb::check, "check"},
}};

[[noreturn]] void usage_error(const std::string& message) {
  throw UserError(fmt::format("pdegen: error: {}", message));
}

std::optional<Verb> find_verb(std::string_view word) {
  for (const auto& [verb, name] : verbs)
    if (name == word) return verb;
  return std::nullopt;
}

spdlog::level::level_enum parse_level(const std::string& word) {
  constexpr std::array<std::pair<std::string_view, spdlog::level::level_enum>, 6> levels = {{
      {"trace", spdlog::level::trace},
      {"debug", spdlog::level::debug},
      {"info", spdlog::level::info},
      {"warn", spdlog::level::warn},
      {"error", spdlog::level::err},
      {"off", spdlog::level::off},
  }};
  for (const auto& [name, level] : levels)
    if (name == word) return level;
  usage_error(fmt::format(
      "--log-level '{}' is not a level; expected one of: trace, debug, info, warn, error, off", word));
}

// A YAML double-quoted string holding `s` exactly, for overrides built from option values.
std::string yaml_quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

// A whole number >= `least` for option `name`.
int64_t parse_count(const std::string& name, const std::string& word, int64_t least) {
  size_t used = 0;
  int64_t n = -1;
  try {
    n = std::stoll(word, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != word.size() || n < least || n > (int64_t{1} << 40))
    usage_error(fmt::format("{} '{}' is not a whole number >= {}", name, word, least));
  return n;
}

std::string see_help(Verb verb) {
  return verb == Verb::none ? "see 'pdegen --help'" : fmt::format("see 'pdegen {} --help'", verb_name(verb));
}

}  // namespace

std::string_view verb_name(Verb verb) {
  for (const auto& [v, name] : verbs)
    if (v == verb) return name;
  return "";
}

namespace {

// The verb, the deck and the overrides from the positional arguments. False when only --help or
// --version was asked for (nothing else is needed, nor checked).
bool read_positional(CliOptions& o, const std::vector<std::string>& positional) {
  size_t next = 0;
  if (next < positional.size() && positional[next] == "help") {  // `pdegen help [VERB]`
    o.help = true;
    ++next;
  }
  if (next < positional.size()) {
    const std::string& word = positional[next++];
    if (auto verb = find_verb(word)) {
      o.verb = *verb;
    } else {
      std::vector<std::string> names;
      for (const auto& entry : verbs) names.emplace_back(entry.second);
      const auto near = config::nearest(word, names);
      usage_error(fmt::format("unknown verb '{}'{}; the verbs are train, predict, solve, dataset and check",
                              word, near ? fmt::format(" (did you mean '{}'?)", *near) : ""));
    }
  }
  if (o.help || o.version) return false;

  if (o.verb == Verb::none)
    usage_error("missing verb: pdegen train|predict|solve|dataset|check DECK (see 'pdegen --help')");
  const std::string_view verb = verb_name(o.verb);
  if (next >= positional.size())
    usage_error(fmt::format("pdegen {} needs a DECK, the input deck file ({})", verb, see_help(o.verb)));
  o.deck = positional[next++];
  for (; next < positional.size(); ++next) {
    if (positional[next].find('=') == std::string::npos)
      usage_error(
          fmt::format("unexpected argument '{}' after the deck: overrides are written key.path=value ({})",
                      positional[next], see_help(o.verb)));
    o.overrides.push_back(positional[next]);
  }

  return true;
}

// Options given to a verb that does not take them.
void check_options_fit_verb(const CliOptions& o, bool tile_given, bool halo_given) {
  const std::string_view verb = verb_name(o.verb);
  auto only_for = [&](bool given, std::string_view option, Verb owner) {
    if (given && o.verb != owner)
      usage_error(
          fmt::format("{} is an option of 'pdegen {}', not of 'pdegen {}'", option, verb_name(owner), verb));
  };
  only_for(!o.checkpoint.empty(), "--checkpoint", Verb::predict);
  only_for(!o.restart.empty(), "--restart", Verb::train);
  only_for(o.verbose, "--verbose", Verb::check);
  only_for(tile_given, "--tile", Verb::predict);
  only_for(halo_given, "--halo", Verb::predict);
  only_for(o.tile_batch > 0, "--tile-batch", Verb::predict);
  only_for(o.no_reference, "--no-reference", Verb::predict);
  only_for(o.samples > 0, "--samples", Verb::dataset);
  only_for(o.shard_samples > 0, "--shard-samples", Verb::dataset);
  only_for(o.first_index > 0, "--first-index", Verb::dataset);
  if (o.verb == Verb::dataset && o.samples == 0)
    usage_error("pdegen dataset needs --samples N, the number of samples to generate");
  if ((halo_given || o.tile_batch > 0) && o.tile == 0)
    usage_error(fmt::format("{} sets up tiled prediction and needs --tile N (N > 0)",
                            halo_given ? "--halo" : "--tile-batch"));
  if (o.verb == Verb::predict && o.checkpoint.empty())
    usage_error("pdegen predict needs --checkpoint FILE, the trained generator to evaluate");
}

}  // namespace

CliOptions parse_cli(const std::vector<std::string>& args) {
  CliOptions o;
  bool options_done = false;  // after "--" every argument is positional
  bool tile_given = false, halo_given = false;
  std::vector<std::string> positional;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (options_done || arg.size() < 2 || arg[0] != '-') {
      positional.push_back(arg);
      continue;
    }
    if (arg == "--") {
      options_done = true;
      continue;
    }
    // "--name=value" or "--name value".
    const size_t eq = arg.find('=');
    const std::string name = arg.substr(0, eq);
    auto value = [&]() -> std::string {
      if (eq != std::string::npos) return arg.substr(eq + 1);
      if (i + 1 >= args.size()) usage_error(fmt::format("{} needs a value", name));
      return args[++i];
    };
    auto no_value = [&] {
      if (eq != std::string::npos) usage_error(fmt::format("{} takes no value", name));
    };
    if (name == "--help" || name == "-h") {
      no_value();
      o.help = true;
    } else if (name == "--version") {
      no_value();
      o.version = true;
    } else if (name == "--log-level") {
      o.log_level = parse_level(value());
    } else if (name == "--log-all-ranks") {
      no_value();
      o.log_all_ranks = true;
    } else if (name == "--checkpoint") {
      o.checkpoint = value();
    } else if (name == "--restart") {
      o.restart = value();
    } else if (name == "--verbose") {
      no_value();
      o.verbose = true;
    } else if (name == "--tile") {
      o.tile = parse_count(name, value(), 0);
      tile_given = true;
    } else if (name == "--halo") {
      const std::string v = value();
      o.halo = v == "auto" ? -1 : parse_count("--halo (auto or a count)", v, 0);
      halo_given = true;
    } else if (name == "--tile-batch") {
      o.tile_batch = parse_count(name, value(), 1);
    } else if (name == "--no-reference") {
      no_value();
      o.no_reference = true;
    } else if (name == "--samples") {
      o.samples = parse_count(name, value(), 1);
    } else if (name == "--shard-samples") {
      o.shard_samples = parse_count(name, value(), 1);
    } else if (name == "--first-index") {
      o.first_index = parse_count(name, value(), 0);
    } else {
      usage_error(fmt::format("unknown option '{}' ({})", name, see_help(o.verb)));
    }
  }

  if (!read_positional(o, positional)) return o;
  check_options_fit_verb(o, tile_given, halo_given);
  if (!o.restart.empty()) o.overrides.push_back("training.restart=" + yaml_quoted(o.restart));
  return o;
}

namespace {

// The help of each verb ('pdegen VERB --help'; none: 'pdegen --help').
constexpr std::string_view none_help =
    R"(pdegen: data-free neural PDE solvers (U-Net generators trained with a finite-element loss)

usage: pdegen VERB DECK [key.path=value ...] [options]
       pdegen --version
       pdegen [VERB] --help

verbs:
  train     train a generator on the deck's PDE with the physics loss
  predict   a trained generator (--checkpoint FILE) on new samples, against the reference
  solve     reference solutions of the evaluation samples from the classical solver
  dataset   N samples with their classical solutions, as HDF5 shards for training from data
  check     validate the deck; print it resolved, with the network's size, FLOPs and memory

overrides: key.path=value sets a deck key after the file is read; the value is YAML:
  pdegen check deck.yaml training.steps=500 optimizer.lr=3e-4 'optimizer.schedule={type: cosine}'

options:
  --log-level LEVEL   trace, debug, info (default), warn, error or off
  --log-all-ranks     every MPI rank logs (default: rank 0; other ranks only warnings and errors)
  -h, --help          this help; 'pdegen VERB --help' for one verb
  --version           version, git hash, backends, MPI and HDF5 libraries

exit codes: 0 success, 1 runtime failure, 2 usage or deck error, 3 not implemented (e.g. predict
--tile for a problem that cannot sample a box of its grid), 4 training diverged (NaN/Inf loss), 128+N stopped by signal N
deck keys, defaults and error messages: docs/deck.md
)";

constexpr std::string_view train_help =
    R"(usage: pdegen train DECK [key.path=value ...] [--restart FILE] [options]

Trains the deck's generator with the physics loss on every MPI rank of the job. Writes under
output.dir: deck.resolved.yaml, pdegen.log, history.csv (one row per logged step), summary.json,
checkpoints/step_<N>.h5 and, at the end, fields.h5 + fields.xdmf (held-out samples: coefficient,
prediction, reference, error). SIGINT/SIGTERM stop after the current step with a final checkpoint;
training.restart=latest (or --restart FILE) continues exactly where a checkpoint left off.

  --restart FILE   continue from this checkpoint (the same as training.restart=FILE)
  --log-level LEVEL, --log-all-ranks   see 'pdegen --help'
)";

constexpr std::string_view predict_help =
    R"(usage: pdegen predict DECK --checkpoint FILE [key.path=value ...] [options]

Runs a trained generator on evaluation.samples new samples (a sample range that neither training
nor evaluation uses) and compares it with the reference solver: writes output.dir/predict.h5 +
.xdmf (coefficient, prediction, reference, error) and predict.json (rel_l2 per sample, mean, max).
A domain too large for the network's activations (problem.resolution=8192) runs in tiles: each
tile plus a halo of the network's receptive field goes through the network, only its interior is
kept, and the result equals whole-domain inference to rounding; the tiles are shared by the MPI
ranks and written to predict.h5 as they come.

  --checkpoint FILE   the trained generator (required)
  --tile N            tiles of N nodes per axis (a multiple of 2^(network.depth - 1)); 0, the
                      default, runs the whole domain at once
  --halo auto|N       nodes of context on each side of a tile: auto (default) is the receptive
                      field's; a smaller N is allowed, with a warning giving the error it costs
  --tile-batch N      tiles per forward (default training.batch_size)
  --no-reference      skip the reference solve and the error (for domains where it is too costly)
  --log-level LEVEL, --log-all-ranks   see 'pdegen --help'
)";

constexpr std::string_view solve_help = R"(usage: pdegen solve DECK [key.path=value ...] [options]

Computes the reference solutions of the deck's evaluation samples with the classical solver
(matrix-free CG + geometric multigrid to evaluation.solver_tolerance): writes
output.dir/reference.h5 + .xdmf (coefficient, u_ref) and solve.json (iterations, time).

  --log-level LEVEL, --log-all-ranks   see 'pdegen --help'
)";

constexpr std::string_view dataset_help =
    R"(usage: pdegen dataset DECK --samples N [--shard-samples N] [--first-index I] [key.path=value ...]

Generates N samples of the deck's problem (problem.*, seeded by training.seed) with their classical
solutions (evaluation.solver_tolerance), a range of global sample indices that training,
evaluation and predict never use, and writes them to output.dir as dataset_00000.h5, ... (the
fields-file layout: /fields/<input> and /fields/u_ref [n, grid...] fp32, one HDF5 chunk per sample,
/sample_index, the deck; each shard's XDMF shows its first 16 samples) and dataset.json (shards,
index ranges, times). Every rank solves and writes its share of each shard.

  --samples N         samples in all (required)
  --shard-samples N   samples per file (default: about 256 MiB of fields per file)
  --first-index I     start at sample I of the dataset range (default 0): another slice of the
                      same sequence, e.g. a held-out set
  --log-level LEVEL, --log-all-ranks   see 'pdegen --help'
)";

constexpr std::string_view check_help = R"(usage: pdegen check DECK [key.path=value ...] [--verbose] [options]

Validates DECK with the overrides applied and prints the resolved deck: every key with its
effective value, as YAML that pdegen reads back unchanged. Then, as YAML comments, the U-Net's
parameter count, FLOPs per sample (forward) and per training step (forward + backward, global
batch) and the peak activation memory of a training step. Exits 2 listing every error of the deck
as "deck.yaml:LINE:COLUMN: error: ...".

  --verbose   also print the layer table
  --log-level LEVEL, --log-all-ranks   see 'pdegen --help'
)";

}  // namespace

std::string help_text(Verb verb) {
  switch (verb) {
    case Verb::none:
      return std::string(none_help);
    case Verb::train:
      return std::string(train_help);
    case Verb::predict:
      return std::string(predict_help);
    case Verb::solve:
      return std::string(solve_help);
    case Verb::dataset:
      return std::string(dataset_help);
    case Verb::check:
      return std::string(check_help);
  }
  return "";
}

}  // namespace pdegen::app

// Loading a deck: read the file, parse it, apply the overrides to the tree, run the section readers,
// then report every error at once (see deck.hpp).
#include "config/deck.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "config/deck_doc.hpp"
#include "config/overrides.hpp"
#include "config/reader.hpp"
#include "config/section_readers.hpp"
#include "core/error.hpp"

namespace pdegen {

Shape sample_shape(const ProblemConfig& problem) {
  const int64_t n = problem.resolution;
  switch (problem.pde) {
    case PdeKind::poisson2d:
      return {1, n, n};
    case PdeKind::poisson3d:
      return {1, n, n, n};
    case PdeKind::burgers1d:
      return {1, problem.burgers.time_resolution > 0 ? problem.burgers.time_resolution : n, n};
  }
  PDEGEN_THROW("unhandled pde {}", static_cast<int>(problem.pde));
}

std::string grid_text(const ProblemConfig& problem) {
  const Shape s = sample_shape(problem);
  std::string out;
  for (int d = 1; d < s.rank(); ++d) out += fmt::format("{}{}", d > 1 ? "x" : "", s[d]);
  return out;
}

Shape input_shape(const ProblemConfig& problem) {
  Shape s = sample_shape(problem);
  if (problem.pde == PdeKind::burgers1d) s[0] = 3;
  if (problem.is_inverse()) s[0] = 2;  // the observed u, and log nu pinned on the inflow boundary
  return s;
}

namespace {

// Line and column (from 1) of the first tab in a line's leading whitespace.
std::optional<std::pair<int, int>> indentation_tab(std::string_view text) {
  int line = 1, column = 1;
  bool leading = true;
  for (char c : text) {
    if (c == '\n') {
      ++line;
      column = 1;
      leading = true;
      continue;
    }
    if (leading && c == '\t') return std::pair{line, column};
    if (c != ' ') leading = false;
    ++column;
  }
  return std::nullopt;
}

// Reads section `name` of `top` with `reader`, starting from `c`.
template <class Config, class Reader>
void read_section(config::Section& top, std::string_view name, const config::Doc& doc, Config& c,
                  Reader&& reader) {
  config::Section s = top.section(name, doc);
  c = reader(s, c);
  s.finish();
}

// parse_deck(), keeping the records of the reads in `records` when it is not null.
Deck parse(std::string_view text, std::string_view name, const std::vector<std::string>& overrides,
           std::vector<config::KeyRecord>* records) {
  const std::string deck_name(name);
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    // yaml-cpp's message for a tab in the indentation ("illegal map value") does not say so.
    if (const auto tab = indentation_tab(text))
      throw UserError(
          fmt::format("{}:{}:{}: error: invalid YAML: a tab in the indentation (YAML indents with "
                      "spaces)",
                      deck_name, tab->first, tab->second));
    throw UserError(fmt::format("{}:{}:{}: error: invalid YAML: {}", deck_name, e.mark.line + 1,
                                e.mark.column + 1, e.msg));
  }
  if (root.IsDefined() && !root.IsNull() && !root.IsMap())
    throw UserError(
        fmt::format("{}:{}:{}: error: a deck is a mapping of sections (problem:, network:, "
                    "optimizer:, ...), not a {}",
                    deck_name, root.Mark().line + 1, root.Mark().column + 1,
                    root.IsSequence() ? "list" : "single value"));
  if (!root.IsMap()) root.reset(YAML::Node(YAML::NodeType::Map));

  config::ReadContext context(deck_name);
  for (const auto& text_of_override : overrides) {
    const config::Override o = config::parse_override(text_of_override);
    config::apply_override(root, o);
    context.add_override({o.text, o.path});
  }

  Deck d;
  config::Section top(context, "", root, YAML::Mark::null_mark());
  config::read_deck(top, d);
  top.finish();
  context.throw_if_errors();
  if (records) *records = context.records();
  return d;
}

}  // namespace

Deck parse_deck(std::string_view text, std::string_view name, const std::vector<std::string>& overrides) {
  return parse(text, name, overrides, nullptr);
}

Deck load_deck(const std::string& path, const std::vector<std::string>& overrides) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw UserError(fmt::format("{}: error: no such deck file", path));
  if (std::filesystem::is_directory(path, ec))
    throw UserError(fmt::format("{}: error: is a directory, not a deck file", path));
  std::ifstream in(path);
  if (!in)
    throw UserError(fmt::format("{}: error: cannot open the deck file ({})", path, std::strerror(errno)));
  std::ostringstream text;
  text << in.rdbuf();
  return parse_deck(text.str(), path, overrides);
}

namespace config {

std::vector<KeyRecord> deck_records(std::string_view text, std::string_view name,
                                    const std::vector<std::string>& overrides) {
  std::vector<KeyRecord> records;
  parse(text, name, overrides, &records);
  return records;
}

void read_deck(Section& top, Deck& d) {
  read_section(top, "problem", "the PDE and its grid", d.problem, read_problem);
  read_section(top, "network", "the generator", d.network, read_network);
  read_section(top, "optimizer", "the optimizer", d.optimizer, read_optimizer);
  read_section(top, "training", "the training loop", d.training, read_training);
  {
    const bool present = top.has("data") || d.training.objective != ObjectiveKind::physics;
    Section data = top.section("data", "training from a dataset", present);
    if (present) d.data = read_data(data, d.data, d.training);
    data.finish();
  }
  {
    const bool present = top.has("multigrid") || d.multigrid.enabled();
    Section multigrid = top.section("multigrid", "training on a hierarchy of resolutions", present);
    if (present) d.multigrid = read_multigrid(multigrid, d.multigrid, d);
    multigrid.finish();
  }
  read_section(top, "parallel", "multi-rank training", d.parallel, read_parallel);
  Section evaluation = top.section("evaluation", "comparison with the reference solver");
  d.evaluation = read_evaluation(evaluation, d.evaluation);
  evaluation.finish();
  read_section(top, "output", "what a run writes", d.output, [&](Section& s, const OutputConfig& c) {
    return read_output(s, c, d.evaluation, evaluation.ok("samples"));
  });
  read_section(top, "cuda", "how cuDNN may compute", d.cuda, read_cuda);
  read_section(top, "cpu", "how oneDNN may compute", d.cpu, read_cpu);
  read_section(top, "timeline", "a trace of some steps", d.timeline, read_timeline);
  d.device = top.choice<Device>(
      "device", d.device,
      "where the network runs; `cuda` needs a binary built with the CUDA backend (`pdegen --version` says)");
#if !defined(PDEGEN_HAVE_CUDA)
  if (d.device == Device::cuda)
    top.fail("device",
             "'device' is 'cuda' but this pdegen was built without the CUDA backend (build it with the "
             "'cuda' CMake preset, or use device: cpu)");
#endif
  d.precision = top.choice<DType>(
      "precision", d.precision,
      "storage type of the activations and their gradients (bf16 on either device, fp16 on `device: "
      "cuda`): convolutions on tensor cores or AMX/AVX512-BF16 with fp32 accumulation; parameters, "
      "parameter gradients, optimizer state, normalisation statistics and the FEM loss stay fp32 "
      "(docs/cuda.md, \"Mixed precision\")");
  if (d.precision == DType::f16 && d.device != Device::cuda)
    top.fail("precision",
             "'precision' is 'fp16', which needs device: cuda (oneDNN has no fp16 convolutions "
             "on the CPU): use bf16 on the CPU");
  // Loss scaling is on by default for fp16; a described Deck already holds its choice.
  if (!top.describing()) d.loss_scaling.enabled = d.precision == DType::f16;
  read_section(top, "loss_scaling", "dynamic loss scaling", d.loss_scaling, read_loss_scaling);
  if (d.loss_scaling.enabled) {
    // L-BFGS's line search compares losses between evaluations; a skipped evaluation has no place in it.
    bool lbfgs = d.optimizer.type == OptimizerKind::lbfgs;
    for (const OptimizerPhase& phase : d.optimizer.phases)
      lbfgs |= phase.settings.type == OptimizerKind::lbfgs;
    if (lbfgs)
      top.fail("precision",
               fmt::format("loss scaling (loss_scaling.enabled, on by default with precision fp16) cannot "
                           "skip an overflowed evaluation inside L-BFGS's line search: use precision bf16 or "
                           "fp32 with optimizer type lbfgs, or set loss_scaling.enabled: false"));
  }
}

}  // namespace config

}  // namespace pdegen

// pdegen check: the resolved deck, then the network's size, FLOPs and memory as YAML comments, so
// the whole output is itself a deck that pdegen reads back (`pdegen check a.yaml > b.yaml`).
#include <fmt/format.h>

#include <cstdio>
#include <string>

#include "app/verbs.hpp"

namespace pdegen::app {

namespace {

std::string grouped(int64_t v) {
  std::string digits = fmt::format("{}", v < 0 ? -v : v), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return v < 0 ? "-" + out : out;
}

std::string flops(double f) {
  if (f >= 1e12) return fmt::format("{:.2f} TFLOP", f * 1e-12);
  if (f >= 1e9) return fmt::format("{:.2f} GFLOP", f * 1e-9);
  return fmt::format("{:.1f} MFLOP", f * 1e-6);
}

std::string bytes(double b) {
  if (b >= 1024.0 * 1024 * 1024) return fmt::format("{:.2f} GiB", b / (1024.0 * 1024 * 1024));
  if (b >= 1024.0 * 1024) return fmt::format("{:.1f} MiB", b / (1024.0 * 1024));
  return fmt::format("{:.1f} KiB", b / 1024.0);
}

}  // namespace

int run_check(const CliOptions& options, int rank) {
  const ValidatedDeck v = validate_deck(options);
  if (rank != 0) return 0;
  const NetworkPlan& plan = v.plan;
  const int64_t batch = plan.global_batch;

  std::string out = fmt::format("# pdegen check: {} is valid", options.deck);
  if (!options.overrides.empty()) out += fmt::format(" with {}", fmt::join(options.overrides, " "));
  out += "\n# The resolved deck: every key with its effective value.\n";
  out += to_yaml(v.deck);
  out += fmt::format("\n# {}: {} -> {} per sample\n", plan.description, plan.input.str(), plan.output.str());
  out += fmt::format("#   parameters:                      {} ({} fp32)\n", grouped(plan.parameters),
                     bytes(4.0 * static_cast<double>(plan.parameters)));
  out += fmt::format("#   FLOPs per sample, forward:       {}\n", flops(plan.forward_flops_per_sample));
  out += fmt::format("#   FLOPs per training step:         {} (forward + backward, global batch {})\n",
                     flops(plan.flops_per_step), batch);
  out += fmt::format(
      "#   peak activation memory per step: {} (fp32, every layer output kept, global batch {} "
      "on one process)\n",
      bytes(static_cast<double>(plan.peak_activation_bytes)), batch);
  if (options.verbose) {
    out +=
        "#\n# Layers (shapes per sample; FLOPs per sample; 'conv 2/2' = kernel 2 stride 2, '+b' = bias, "
        "'+#i' = concatenated with layer i's output):\n";
    for (const auto& row : plan.layer_table()) out += fmt::format("#   {}\n", row);
  }
  std::fputs(out.c_str(), stdout);
  std::fflush(stdout);
  return 0;
}

}  // namespace pdegen::app

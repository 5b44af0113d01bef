// pdegen check: the resolved deck, then the network's size, FLOPs and memory as YAML comments, so
// the whole output is itself a deck that pdegen reads back (`pdegen check a.yaml > b.yaml`). Exit 2
// for what would certainly fail (a bad deck, a restart file that is no checkpoint); a step larger
// than this machine's memory only warns, since the run may go to more or larger machines.
#include <fmt/format.h>

#include <cstdio>
#include <string>

#include "app/memory_estimate.hpp"
#include "app/multigrid_schedule.hpp"
#include "app/verbs.hpp"
#include "core/error.hpp"
#include "io/checkpoint.hpp"
#include "nn/network_factory.hpp"

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
  const double gib = 1024.0 * 1024 * 1024;
  if (b >= 1024.0 * 1024 * gib) return fmt::format("{:.2f} PiB", b / (1024.0 * 1024 * gib));
  if (b >= 1024.0 * gib) return fmt::format("{:.2f} TiB", b / (1024.0 * gib));
  if (b >= gib) return fmt::format("{:.2f} GiB", b / gib);
  if (b >= 1024.0 * 1024) return fmt::format("{:.1f} MiB", b / (1024.0 * 1024));
  return fmt::format("{:.1f} KiB", b / 1024.0);
}

// An explicit restart file must be a checkpoint that train can read: found now, not after a queue.
void check_restart(const CliOptions& options, const Deck& deck) {
  const std::string& restart = deck.training.restart;
  if (restart == "none" || restart == "latest") return;
  try {
    read_checkpoint(restart);
  } catch (const UserError& e) {
    throw UserError(
        fmt::format("{}: error: 'training.restart' names no usable checkpoint: {}", options.deck, e.what()));
  }
}

std::string memory_lines(const MemoryEstimate& e, double machine) {
  return fmt::format(
      "#   estimated memory per process:    {} ({} of activations for {} sample{} per pass, {} of "
      "parameters, "
      "gradients and optimizer state{}); this machine has {}\n",
      bytes(e.total()), bytes(e.per_sample * static_cast<double>(e.samples)), e.samples,
      e.samples == 1 ? "" : "s", bytes(e.state),
      e.sampler > 0 ? fmt::format(", {} of KL sampler tables", bytes(e.sampler)) : "", bytes(machine));
}

// The keys that size a step, and how many ranks of this machine's size would hold it.
std::string memory_warning(const Deck& deck, const MemoryEstimate& e, double machine) {
  std::string text = fmt::format(
      "WARNING: a training step of this deck needs about {} on one process, more than this machine's {}. "
      "The activations grow with problem.resolution^{} (now {}), training.batch_size ({}) and "
      "network.base_channels ({}). ",
      bytes(e.total()), bytes(machine), deck.problem.spatial_dims(), deck.problem.resolution,
      deck.training.batch_size, deck.network.base_channels);
  const int64_t ranks = ranks_to_fit(e, machine);
  if (ranks == 0)
    return text + fmt::format(
                      "Even one sample per process needs {}, so splitting the batch cannot help: lower "
                      "problem.resolution or network.base_channels",
                      bytes(e.per_sample + e.fixed()));
  return text + fmt::format(
                    "To fit, split the batch over at least {} ranks with this much memory each, raise "
                    "training.micro_batches (now {}), or lower those keys",
                    ranks, deck.training.micro_batches);
}

// One line per multigrid level, and the cycle's visits.
std::string multigrid_lines(const Deck& deck) {
  if (!deck.multigrid.enabled()) return {};
  std::string out = fmt::format("#   multigrid, {} cycle, visits (level):", name_of(deck.multigrid.cycle));
  for (int level : visits_of(deck)) out += fmt::format(" {}", level);
  out += fmt::format("; {} steps in all\n", total_steps(deck));
  for (int l = 0; l < deck.multigrid.levels; ++l) {
    const Deck d = level_deck(deck, l);
    const NetworkPlan plan = plan_network(d);
    out += fmt::format(
        "#     level {} ({}): {} steps per visit, batch {}, lr {:g}, {} per step, about {} per process\n", l,
        grid_text(d.problem), d.training.steps, d.training.batch_size, d.optimizer.lr,
        flops(plan.flops_per_step), bytes(estimate_memory(d, plan).total()));
  }
  return out;
}

}  // namespace

int run_check(const CliOptions& options, int rank) {
  const ValidatedDeck v = validate_deck(options);
  check_restart(options, v.deck);
  if (rank != 0) return 0;
  // With multigrid, the figures below are those of the finest level, the costliest.
  const Deck finest = level_deck(v.deck, v.deck.multigrid.levels - 1);
  const NetworkPlan plan = v.deck.multigrid.enabled() ? plan_network(finest) : v.plan;
  const int64_t batch = plan.global_batch;
  const MemoryEstimate memory = estimate_memory(finest, plan);
  const double machine = machine_memory_bytes();
  const std::string warning = memory.total() > machine ? memory_warning(finest, memory, machine) : "";

  std::string out = fmt::format("# pdegen check: {} is valid", options.deck);
  if (!options.overrides.empty()) out += fmt::format(" with {}", fmt::join(options.overrides, " "));
  if (!warning.empty()) out += " (but see the WARNING at the end)";
  out += "\n# The resolved deck: every key with its effective value.\n";
  out += to_yaml(v.deck);
  out += fmt::format("\n# {}: {} -> {} per sample\n", plan.description, plan.input.str(), plan.output.str());
  out += fmt::format("#   parameters:                      {} ({} fp32)\n", grouped(plan.parameters),
                     bytes(4.0 * static_cast<double>(plan.parameters)));
  out += fmt::format("#   FLOPs per sample, forward:       {}\n", flops(plan.forward_flops_per_sample));
  const ReceptiveField field = receptive_field(plan);
  out += field.bounded
             ? fmt::format("#   receptive field:                 +-{} nodes per axis\n", field.halo())
             : "#   receptive field:                 the whole grid (instance norm)\n";
  out += fmt::format("#   FLOPs per training step:         {} (forward + backward, global batch {})\n",
                     flops(plan.flops_per_step), batch);
  out += fmt::format(
      "#   peak activation memory per step: {} (fp32, every layer output kept, global batch {} "
      "on one process)\n",
      bytes(static_cast<double>(plan.peak_activation_bytes)), batch);
  out += memory_lines(memory, machine);
  out += multigrid_lines(v.deck);
  if (options.verbose) {
    out +=
        "#\n# Layers (shapes per sample; FLOPs per sample; 'conv 2/2' = kernel 2 stride 2, '+b' = bias, "
        "'+#i' = concatenated with layer i's output):\n";
    for (const auto& row : plan.layer_table()) out += fmt::format("#   {}\n", row);
  }
  if (!warning.empty()) {
    out += "#\n# " + warning + "\n";
    std::fputs((warning + "\n").c_str(), stderr);
  }
  std::fputs(out.c_str(), stdout);
  std::fflush(stdout);
  return 0;
}

}  // namespace pdegen::app

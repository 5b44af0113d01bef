// The input deck: every error path with its exact message, the defaults, overrides, the resolved
// deck's round trip, and the U-Net plan's accounting against hand counts.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <filesystem>
#include <string>
#include <vector>

#include "config/deck.hpp"
#include "core/error.hpp"
#include "nn/network_factory.hpp"
#include "nn/unet_plan.hpp"

using namespace pdegen;

namespace {

constexpr const char* minimal = "problem:\n  pde: poisson2d\n  resolution: 64\n";

// The message of the UserError that reading `text` (named deck.yaml) throws; "" when it is valid.
std::string error_of(std::string_view text, const std::vector<std::string>& overrides = {}) {
  try {
    parse_deck(text, "deck.yaml", overrides);
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

std::string with_minimal(std::string_view rest) { return std::string(minimal) + std::string(rest); }

bool contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

// The repository's input_decks/, found from this file's path so the test runs from any directory.
std::filesystem::path decks_dir() {
  return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path() / "input_decks";
}

}  // namespace

// ---- defaults --------------------------------------------------------------------------------

TEST_CASE("a deck with only the required keys gets every documented default") {
  const Deck d = parse_deck(minimal, "deck.yaml");
  Deck expected;
  expected.problem.resolution = 64;
  CHECK(d == expected);
  // The documented values, spelled out so that changing a default is a visible decision.
  CHECK(d.problem.loss == LossKind::energy);
  CHECK(d.problem.poisson.correlation_length == 0.5);
  CHECK(d.problem.poisson.kl_modes == 4);
  CHECK(d.problem.poisson.omega_max == 3.0);
  CHECK(d.network.type == NetworkKind::unet);
  CHECK(d.network.depth == 4);
  CHECK(d.network.base_channels == 16);
  CHECK(d.network.channel_multiplier == 2);
  CHECK(d.network.convs_per_level == 2);
  CHECK(d.network.kernel_size == 3);
  CHECK(d.network.norm == NormKind::none);
  CHECK(d.network.activation == ActivationKind::relu);
  CHECK(d.network.downsample == DownsampleKind::maxpool);
  CHECK(d.network.upsample == UpsampleKind::transposed_conv);
  CHECK(d.optimizer.type == OptimizerKind::adam);
  CHECK(d.optimizer.lr == 1e-3);
  CHECK(d.optimizer.adam.beta2 == 0.999);
  CHECK(d.optimizer.schedule.type == ScheduleKind::constant);
  CHECK(d.training.steps == 1000);
  CHECK(d.training.batch_size == 16);
  CHECK(d.training.restart == "none");
  CHECK(d.parallel.bucket_mb == 4.0);
  CHECK(d.parallel.sync_batchnorm == SyncBatchNorm::automatic);
  CHECK(d.evaluation.every == 100);
  CHECK(d.evaluation.solver_tolerance == 1e-10);
  CHECK(d.output.dir == "runs/default");
  CHECK(d.timeline.enabled == false);
  CHECK(d.device == Device::cpu);
  CHECK(d.precision == DType::f32);
  CHECK(d.cpu.conv_algorithm == ConvAlgorithmKind::automatic);
}

TEST_CASE("burgers1d defaults to the residual loss and resolves time_resolution 0 to the resolution") {
  const Deck d = parse_deck("problem: {pde: burgers1d, resolution: 128}", "deck.yaml");
  CHECK(d.problem.loss == LossKind::residual);
  CHECK(d.problem.burgers.time_resolution == 128);
  CHECK(sample_shape(d.problem) == Shape{1, 128, 128});
  CHECK(input_shape(d.problem) == Shape{3, 128, 128});  // b, x, t
  const Deck e = parse_deck("problem: {pde: burgers1d, resolution: 64, time_resolution: 32}", "deck.yaml");
  CHECK(sample_shape(e.problem) == Shape{1, 32, 64});
}

TEST_CASE(
    "burgers1d takes the least-squares loss when inviscid: energy and viscous least squares are refused") {
  const Deck d = parse_deck("problem: {pde: burgers1d, resolution: 64, loss: least_squares}", "deck.yaml");
  CHECK(d.problem.loss == LossKind::least_squares);
  CHECK(
      contains(error_of("problem: {pde: burgers1d, resolution: 64, loss: least_squares, viscosity: 0.01}\n"),
               "'problem.loss' is 'least_squares', which needs problem.viscosity 0 (got 0.01)"));
  CHECK(contains(error_of("problem: {pde: burgers1d, resolution: 64, loss: energy}\n"),
                 "'problem.loss' is 'energy', but burgers1d supports: residual, least_squares"));
  CHECK(contains(error_of("problem: {pde: poisson2d, resolution: 64, loss: least_squares}\n"),
                 "'problem.loss' is 'least_squares', but poisson2d and poisson3d support: energy, residual"));
}

// ---- unknown keys --------------------------------------------------------------------------------

TEST_CASE("an unknown key is reported with its line, column and the nearest valid key") {
  const std::string deck = with_minimal(
      "optimizer:\n"          // 4
      "  type: adam\n"        // 5
      "  lr: 1.0e-3\n"        // 6
      "training:\n"           // 7
      "  steps: 10\n"         // 8
      "network:\n"            // 9
      "  type: unet\n"        // 10
      "  depth: 4\n"          // 11
      "  base_chanels: 16\n"  // 12
  );
  CHECK(error_of(deck) ==
        "deck.yaml:12:3: error: unknown key 'network.base_chanels'; did you mean 'network.base_channels'?");
  CHECK(error_of(with_minimal("trainign:\n  steps: 5\n")) ==
        "deck.yaml:4:1: error: unknown key 'trainign'; did you mean 'training'?");
}

TEST_CASE("a key in the wrong section is pointed to the section that has it") {
  CHECK(error_of(with_minimal("training:\n  lr: 0.01\n")) ==
        "deck.yaml:5:3: error: unknown key 'training.lr'; did you mean 'optimizer.lr'?");
  // Nothing close: the valid keys of the section are listed instead.
  const std::string e = error_of(with_minimal("timeline:\n  colour: red\n"));
  CHECK(e ==
        "deck.yaml:5:3: error: unknown key 'timeline.colour' (valid keys in 'timeline': enabled, first_step, "
        "steps)");
}

// ---- wrong types -------------------------------------------------------------------------------------

TEST_CASE("a value of the wrong type is reported with its line and column") {
  CHECK(error_of(with_minimal("training:\n  steps: ten\n")) ==
        "deck.yaml:5:10: error: 'training.steps' expects a non-negative integer, got 'ten'");
  // Integers are written as integers.
  CHECK(
      error_of(with_minimal("training:\n  steps: 1e3\n")) ==
      "deck.yaml:5:10: error: 'training.steps' expects a non-negative integer, got '1e3' (write it as 1000)");
  CHECK(error_of(with_minimal("training:\n  steps: 10.5\n")) ==
        "deck.yaml:5:10: error: 'training.steps' expects a non-negative integer, got '10.5'");
  CHECK(
      error_of(with_minimal("training:\n  batch_size: \"8\"\n")) ==
      "deck.yaml:5:15: error: 'training.batch_size' expects a positive integer, got the quoted string \"8\" "
      "(write it without quotes)");
  CHECK(error_of(with_minimal("optimizer:\n  lr: fast\n")) ==
        "deck.yaml:5:7: error: 'optimizer.lr' expects a number, got 'fast'");
  CHECK(error_of(with_minimal("parallel:\n  overlap: yes\n")) ==
        "deck.yaml:5:12: error: 'parallel.overlap' expects true or false, got 'yes'");
  CHECK(error_of(with_minimal("network:\n  depth: [4, 5]\n")) ==
        "deck.yaml:5:10: error: 'network.depth' expects a positive integer, got a list");
  CHECK(error_of(with_minimal("output:\n  dir: {a: 1}\n")) ==
        "deck.yaml:5:8: error: 'output.dir' expects a string, got a mapping");
  CHECK(error_of(with_minimal("training:\n  steps:\n")) ==
        "deck.yaml:5:3: error: 'training.steps' expects a non-negative integer, got an empty value");
  CHECK(error_of(with_minimal("network: 4\n")) ==
        "deck.yaml:4:10: error: 'network' is a section and expects a mapping of keys, got '4'");
}

TEST_CASE("numbers accept integers, signs and exponents: integers do not accept fractions") {
  const Deck d = parse_deck(
      with_minimal("optimizer:\n  lr: 1\n  weight_decay: +2.5e-2\ntraining:\n  seed: +7\n"), "deck.yaml");
  CHECK(d.optimizer.lr == 1.0);
  CHECK(d.optimizer.weight_decay == 0.025);
  CHECK(d.training.seed == 7);
  CHECK(error_of(with_minimal("optimizer:\n  lr: .inf\n")) ==
        "deck.yaml:5:7: error: 'optimizer.lr' expects a number, got '.inf'");
  CHECK(error_of(with_minimal("optimizer:\n  lr: 0x10\n")) ==
        "deck.yaml:5:7: error: 'optimizer.lr' expects a number, got '0x10'");
}

// ---- ranges and cross-key checks -------------------------------------------------------------

TEST_CASE("out-of-range values are reported with the allowed range") {
  CHECK(error_of(with_minimal("optimizer:\n  lr: 0\n")) ==
        "deck.yaml:5:7: error: 'optimizer.lr' must be > 0, got 0");
  CHECK(error_of(with_minimal("optimizer:\n  beta1: 1.0\n")) ==
        "deck.yaml:5:10: error: 'optimizer.beta1' must be in [0, 1), got 1.0");
  CHECK(error_of(with_minimal("training:\n  batch_size: 0\n")) ==
        "deck.yaml:5:15: error: 'training.batch_size' must be >= 1, got 0");
  CHECK(error_of("problem:\n  pde: poisson2d\n  resolution: 2\n") ==
        "deck.yaml:3:15: error: 'problem.resolution' must be >= 3, got 2");
  CHECK(error_of("problem:\n  pde: poisson2d\n  resolution: 3000000000\n") ==
        "deck.yaml:3:15: error: 'problem.resolution' is too large: at most 2147483647, got 3000000000");
  CHECK(error_of(with_minimal("evaluation:\n  solver_tolerance: 1\n")) ==
        "deck.yaml:5:21: error: 'evaluation.solver_tolerance' must be in (0, 1), got 1");
  CHECK(error_of(with_minimal("optimizer:\n  schedule: {type: step, gamma: 0}\n")) ==
        "deck.yaml:5:33: error: 'optimizer.schedule.gamma' must be in (0, 1], got 0");
}

TEST_CASE("settings that depend on each other are checked together") {
  CHECK(error_of(with_minimal("network:\n  kernel_size: 4\n")) ==
        "deck.yaml:5:16: error: 'network.kernel_size' must be odd (padding k/2 keeps the grid size), got 4");
  CHECK(error_of(with_minimal("training:\n  batch_size: 4\n  micro_batches: 8\n")) ==
        "deck.yaml:6:18: error: 'training.micro_batches' (8) must not exceed training.batch_size (4)");
  CHECK(error_of(with_minimal("optimizer:\n  lr: 1e-3\n  schedule: {type: cosine, min_lr: 0.01}\n")) ==
        "deck.yaml:6:36: error: 'optimizer.schedule.min_lr' (0.01) must not exceed optimizer.lr (0.001)");
  // A key that is itself wrong is not compared with others (its fallback is not the deck's value).
  CHECK(error_of(with_minimal("optimizer:\n  lr: -1\n  schedule: {type: cosine, min_lr: 0.01}\n")) ==
        "deck.yaml:5:7: error: 'optimizer.lr' must be > 0, got -1");
  CHECK(error_of(with_minimal("optimizer:\n  type: sgd\n  momentum: 0\n  nesterov: true\n")) ==
        "deck.yaml:7:13: error: 'optimizer.nesterov' needs optimizer.momentum > 0");
  CHECK(error_of(with_minimal("output:\n  field_samples: 20\n")) ==
        "deck.yaml:5:18: error: 'output.field_samples' (20) must not exceed evaluation.samples (16): fields "
        "are "
        "written for evaluation samples");
  CHECK(error_of("problem: {pde: poisson2d, resolution: 64, kl_modes: 100000}") ==
        "deck.yaml:1:53: error: 'problem.kl_modes' (100000) must not exceed the 4096 nodes of the 64^2 grid "
        "(problem.resolution): a field on N nodes has at most N independent modes");
  CHECK(error_of("problem: {pde: poisson3d, resolution: 4, kl_modes: 65}") ==
        "deck.yaml:1:52: error: 'problem.kl_modes' (65) must not exceed the 64 nodes of the 4^3 grid "
        "(problem.resolution): a field on N nodes has at most N independent modes");
  CHECK(error_of("problem: {pde: poisson3d, resolution: 4, kl_modes: 64}").find("kl_modes") ==
        std::string::npos);
  CHECK(error_of("problem: {pde: burgers1d, resolution: 64, c_min: 3, c_max: 2}") ==
        "deck.yaml:1:60: error: 'problem.c_max' (2) must be >= problem.c_min (3)");
  CHECK(error_of("problem: {pde: burgers1d, resolution: 64, loss: energy}") ==
        "deck.yaml:1:49: error: 'problem.loss' is 'energy', but burgers1d supports: residual, least_squares "
        "(Burgers' equation is not the minimum of an energy)");
}

// ---- required keys and choices ---------------------------------------------------------------

TEST_CASE("a missing required key says what it needs") {
  CHECK(error_of("problem:\n  pde: poisson2d\n") ==
        "deck.yaml: error: missing required key 'problem.resolution' (nodes per axis, e.g. 64)");
  CHECK(error_of("") ==
        "deck.yaml: error: missing required key 'problem.pde' (the PDE to solve: poisson2d, poisson3d, "
        "burgers1d)\n"
        "deck.yaml: error: missing required key 'problem.resolution' (nodes per axis, e.g. 64)");
}

TEST_CASE("an unknown type or pde lists the known ones") {
  CHECK(error_of(with_minimal("network:\n  type: resnet\n")) ==
        "deck.yaml:5:9: error: 'network.type' is 'resnet'; expected one of: unet, fc_densenet");
  CHECK(error_of("problem:\n  pde: heat\n  resolution: 64\n") ==
        "deck.yaml:2:8: error: 'problem.pde' is 'heat'; expected one of: poisson2d, poisson3d, burgers1d");
  CHECK(error_of(with_minimal("optimizer:\n  type: adamm\n")) ==
        "deck.yaml:5:9: error: 'optimizer.type' is 'adamm'; expected one of: adam, adamw, sgd, lbfgs, lars, "
        "lamb");
  CHECK(error_of(with_minimal("network:\n  norm: batchnorm\n")) ==
        "deck.yaml:5:9: error: 'network.norm' is 'batchnorm'; expected one of: none, batch, instance");
  // With the type unknown, its keys are still type-checked but none is ruled out.
  CHECK(error_of(with_minimal("optimizer:\n  type: adamm\n  beta1: 0.5\n  momentum: 0.5\n")) ==
        "deck.yaml:5:9: error: 'optimizer.type' is 'adamm'; expected one of: adam, adamw, sgd, lbfgs, lars, "
        "lamb");
}

TEST_CASE("a key of another pde or type is named as such") {
  CHECK(error_of(with_minimal("  viscosity: 0.1\n")) ==
        "deck.yaml:4:3: error: 'problem.viscosity' applies only to problem.pde burgers1d (problem.pde is "
        "'poisson2d')");
  CHECK(error_of("problem: {pde: burgers1d, resolution: 64, kl_modes: 3}") ==
        "deck.yaml:1:43: error: 'problem.kl_modes' applies only to problem.pde poisson2d and poisson3d "
        "(problem.pde "
        "is 'burgers1d')");
  CHECK(error_of(with_minimal("optimizer:\n  type: sgd\n  beta1: 0.9\n")) ==
        "deck.yaml:6:3: error: 'optimizer.beta1' applies only to optimizer types adam, adamw and lamb "
        "(optimizer.type is 'sgd')");
  CHECK(error_of(with_minimal("optimizer:\n  schedule:\n    type: cosine\n    step_size: 10\n")) ==
        "deck.yaml:7:5: error: 'optimizer.schedule.step_size' applies only to schedule type step "
        "(optimizer.schedule.type is 'cosine')");
  // ...and accepted for the type it belongs to.
  const Deck d = parse_deck(
      with_minimal("optimizer:\n  type: lars\n  momentum: 0.8\n  trust_coefficient: 0.01\n"), "deck.yaml");
  CHECK(d.optimizer.momentum.momentum == 0.8);
  CHECK(d.optimizer.lars.trust_coefficient == 0.01);
}

TEST_CASE("loss_scaling: on by default for fp16 only, every key checked with its line") {
  const Deck d = parse_deck(minimal, "deck.yaml");
  CHECK_FALSE(d.loss_scaling.enabled);
  CHECK(d.loss_scaling.initial_scale == 65536.0);
  CHECK(d.loss_scaling.growth_interval == 2000);
  const Deck on = parse_deck(
      with_minimal("loss_scaling: {enabled: true, initial_scale: 1024, growth_interval: 10, min_scale: 2}\n"),
      "deck.yaml");
  CHECK(on.loss_scaling.enabled);
  CHECK(on.loss_scaling.initial_scale == 1024.0);
  CHECK(on.loss_scaling.growth_interval == 10);
  CHECK(on.loss_scaling.min_scale == 2.0);
  CHECK(error_of(with_minimal("loss_scaling:\n  backoff_factor: 1\n")) ==
        "deck.yaml:5:19: error: 'loss_scaling.backoff_factor' must be in (0, 1), got 1");
  CHECK(error_of(with_minimal("loss_scaling:\n  growth_factor: 1\n")) ==
        "deck.yaml:5:18: error: 'loss_scaling.growth_factor' must be > 1, got 1");
  CHECK(
      error_of(with_minimal("loss_scaling:\n  initial_scale: 1e30\n")) ==
      "deck.yaml:5:18: error: 'loss_scaling.initial_scale' (1e+30) must lie in [min_scale, max_scale] = [1, "
      "16777216]");
  CHECK(error_of(with_minimal("loss_scaling:\n  min_scale: 8\n  max_scale: 4\n  initial_scale: 6\n")) ==
        "deck.yaml:5:14: error: 'loss_scaling.min_scale' (8) must not exceed max_scale (4)");
  CHECK(contains(error_of(with_minimal("loss_scaling: {enabled: true}\noptimizer: {type: lbfgs}\n")),
                 "cannot skip an overflowed evaluation inside L-BFGS's line search"));
  CHECK(contains(error_of(with_minimal("loss_scaling: {enabled: true}\noptimizer:\n  type: adam\n  then: "
                                       "{after_steps: 5, type: lbfgs}\n")),
                 "L-BFGS"));
}

#if !defined(PDEGEN_HAVE_CUDA)
TEST_CASE("device cuda is refused by a binary without the CUDA backend") {
  CHECK(
      error_of(with_minimal("device: cuda\n")) ==
      "deck.yaml:4:9: error: 'device' is 'cuda' but this pdegen was built without the CUDA backend (build it "
      "with the 'cuda' CMake preset, or use device: cpu)");
}
#endif

TEST_CASE("precision fp16 needs device cuda: bf16 is read on either device") {
  CHECK(error_of(with_minimal("precision: fp16\n")) ==
        "deck.yaml:4:12: error: 'precision' is 'fp16', which needs device: cuda (oneDNN has no fp16 "
        "convolutions on the CPU): use bf16 on the CPU");
  CHECK(parse_deck(with_minimal("precision: bf16\n"), "deck.yaml").precision == DType::bf16);
}

// ---- overrides --------------------------------------------------------------------------------

TEST_CASE("an override of an unknown key names the override and suggests the key") {
  CHECK(error_of(minimal, {"training.stpes=10"}) ==
        "override 'training.stpes=10': error: unknown key 'training.stpes'; did you mean 'training.steps'?");
  CHECK(error_of(minimal, {"netwrk.depth=3"}) ==
        "override 'netwrk.depth=3': error: unknown key 'netwrk'; did you mean 'network'?");
}

TEST_CASE("an override with a wrong type names the override") {
  CHECK(error_of(minimal, {"training.steps=ten"}) ==
        "override 'training.steps=ten': error: 'training.steps' expects a non-negative integer, got 'ten'");
  CHECK(error_of(minimal, {"optimizer.lr=-1"}) ==
        "override 'optimizer.lr=-1': error: 'optimizer.lr' must be > 0, got -1");
  CHECK(error_of(minimal, {"network=3"}) ==
        "override 'network=3': error: 'network' is a section and expects a mapping of keys, got '3'");
}

TEST_CASE("an override sets a nested section from a YAML mapping, replacing the deck's") {
  const std::string deck = with_minimal("optimizer:\n  schedule:\n    type: step\n    step_size: 10\n");
  const Deck d = parse_deck(deck, "deck.yaml", {"optimizer.schedule={type: cosine, min_lr: 1e-5}"});
  CHECK(d.optimizer.schedule.type == ScheduleKind::cosine);
  CHECK(d.optimizer.schedule.min_lr == 1e-5);
  CHECK(d.optimizer.schedule.step_size == ScheduleConfig{}.step_size);
  // Errors inside the mapping name the override.
  CHECK(error_of(minimal, {"optimizer.schedule={type: cosine, step_size: 5}"}) ==
        "override 'optimizer.schedule={type: cosine, step_size: 5}': error: 'optimizer.schedule.step_size' "
        "applies "
        "only to schedule type step (optimizer.schedule.type is 'cosine')");
}

TEST_CASE("overrides replace deck values, create missing sections and apply in order") {
  const Deck d = parse_deck(with_minimal("training:\n  steps: 10\n"), "deck.yaml",
                            {"training.steps=20", "parallel.overlap=false", "training.steps=30",
                             "problem.pde=poisson3d", "output.dir=runs/sweep a"});
  CHECK(d.training.steps == 30);
  CHECK(d.parallel.overlap == false);
  CHECK(d.problem.pde == PdeKind::poisson3d);
  CHECK(d.output.dir == "runs/sweep a");
  // An error in the file stays the file's even when an override touched its section.
  CHECK(error_of(with_minimal("training:\n  steps: x\n"), {"training.seed=3"}) ==
        "deck.yaml:5:10: error: 'training.steps' expects a non-negative integer, got 'x'");
}

TEST_CASE("malformed overrides are reported") {
  CHECK(error_of(minimal, {"training.steps"}) ==
        "override 'training.steps': error: expected key.path=value (for example training.steps=500)");
  CHECK(error_of(minimal, {"training..steps=1"}) ==
        "override 'training..steps=1': error: 'training..steps' is not a key path (expected words joined by "
        "dots, "
        "like training.steps)");
  CHECK(error_of(minimal, {"training.steps="}) ==
        "override 'training.steps=': error: no value after '=' (write training.steps=VALUE)");
  CHECK(contains(
      error_of(minimal, {"optimizer.schedule={type: cosine"}),
      "override 'optimizer.schedule={type: cosine': error: the value '{type: cosine' is not valid YAML: "));
  CHECK(error_of(minimal, {"problem.resolution.x=1"}) ==
        "override 'problem.resolution.x=1': error: 'problem.resolution' holds a value, not a section, so it "
        "has no "
        "key 'x'");
}

// ---- YAML-level problems -------------------------------------------------------------------------

TEST_CASE("malformed YAML is reported with its line") {
  const std::string e = error_of("problem:\n  pde: poisson2d\n  resolution: [64\n");
  CHECK(e.rfind("deck.yaml:4:", 0) == 0);
  CHECK(contains(e, ": error: invalid YAML: "));
  CHECK(error_of("problem:\n  pde: poisson2d\n resolution: 64\n").rfind("deck.yaml:3:", 0) == 0);
  CHECK(error_of("problem:\n\tpde: poisson2d\n") ==
        "deck.yaml:2:1: error: invalid YAML: a tab in the indentation (YAML indents with spaces)");
  CHECK(error_of("- problem\n- network\n") ==
        "deck.yaml:1:1: error: a deck is a mapping of sections (problem:, network:, optimizer:, ...), not a "
        "list");
}

TEST_CASE("a key given twice is an error naming the first") {
  CHECK(error_of(with_minimal("training:\n  steps: 1\n  steps: 2\n")) ==
        "deck.yaml:6:3: error: duplicate key 'training.steps' (first set at line 5)");
}

TEST_CASE("every error of a deck is reported at once: overrides first, then the file in line order") {
  const std::string deck =
      "problem:\n"
      "  pde: poisson2d\n"
      "  resolution: 64\n"
      "training:\n"
      "  steps: ten\n"
      "network:\n"
      "  depht: 3\n";
  CHECK(error_of(deck, {"optimizer.lr=0"}) ==
        "override 'optimizer.lr=0': error: 'optimizer.lr' must be > 0, got 0\n"
        "deck.yaml:5:10: error: 'training.steps' expects a non-negative integer, got 'ten'\n"
        "deck.yaml:7:3: error: unknown key 'network.depht'; did you mean 'network.depth'?");
}

TEST_CASE("load_deck names a deck file that does not exist") {
  CHECK_THROWS_WITH_AS(load_deck("no/such/deck.yaml"), "no/such/deck.yaml: error: no such deck file",
                       UserError);
}

// ---- the resolved deck -----------------------------------------------------------------------

TEST_CASE("to_yaml writes every key, and reading it back gives the same deck") {
  const std::vector<std::string> decks = {
      minimal,
      // Every poisson key and many run keys away from their defaults.
      "problem: {pde: poisson3d, resolution: 40, loss: residual, correlation_length: 0.25, kl_modes: 9, "
      "sigma: 2,\n"
      "          omega_max: 1.5, source: -0.125}\n"
      "network: {depth: 3, base_channels: 8, channel_multiplier: 3, convs_per_level: 1, kernel_size: 5, "
      "norm: batch,\n"
      "          activation: leaky_relu, downsample: strided_conv, upsample: resize_conv}\n"
      "optimizer: {type: adamw, lr: 3.0e-4, weight_decay: 0.01, grad_clip: 1, beta1: 0.8, beta2: 0.99, eps: "
      "1e-6,\n"
      "            schedule: {type: step, warmup_steps: 10, step_size: 100, gamma: 0.1}}\n"
      "training: {steps: 0, batch_size: 7, seed: 18446744073709, micro_batches: 7, log_every: 1,\n"
      "           checkpoint_every: 5, restart: 'runs/a b/checkpoints/step_5.h5'}\n"
      "parallel: {bucket_mb: 0.5, first_bucket_mb: 0.125, overlap: false, hierarchical: on, compression: "
      "bf16,\n"
      "           sync_batchnorm: false, consistency_every: 0}\n"
      "evaluation: {every: 0, samples: 3, solver_tolerance: 1e-12}\n"
      "output: {dir: 'runs/x: \"y\" #1', fields: false, field_samples: 9, checkpoint_keep: 1}\n"
      "timeline: {enabled: true}\n"
      "cpu: {conv_algorithm: direct}\n",
      // Burgers and the optimizers with their own keys.
      "problem: {pde: burgers1d, resolution: 96, time_resolution: 48, t_final: 1, viscosity: 0.01, ic_terms: "
      "3,\n"
      "          ic_sampling: fixed_uniform, c_min: 0.5, c_max: 2, boundary: penalty, boundary_factor: 10}\n"
      "optimizer: {type: lbfgs, lr: 1, history: 5, max_iterations: 7, max_evaluations: 9,\n"
      "            line_search: backtracking, tolerance_grad: 0, tolerance_change: 1e-12, shard_history: "
      "true,\n"
      "            batch: fresh, schedule: {type: cosine, min_lr: 0.5}}\n",
      with_minimal(
          "optimizer: {type: lars, lr: 2, momentum: 0.5, nesterov: true, trust_coefficient: 0.02}\n"),
      with_minimal("optimizer: {type: sgd, momentum: 0.0}\ntraining: {restart: latest}\n"),
  };
  for (const auto& text : decks) {
    CAPTURE(text);
    const Deck d = parse_deck(text, "deck.yaml");
    const std::string yaml = to_yaml(d);
    CAPTURE(yaml);
    const Deck again = parse_deck(yaml, "resolved.yaml");
    CHECK(again == d);
    CHECK(to_yaml(again) == yaml);
  }
  // Every key, including the defaulted ones, is written.
  const std::string yaml = to_yaml(parse_deck(minimal, "deck.yaml"));
  for (const char* line :
       {"problem:\n  pde: poisson2d\n  resolution: 64\n  map: forward\n  loss: energy\n", "  kl_modes: 4\n",
        "  upsample: transposed_conv\n", "  eps: 1e-08\n", "  schedule:\n    type: constant\n",
        "  micro_batches: 1\n", "  sync_batchnorm: auto\n", "  solver_tolerance: 1e-10\n",
        "  checkpoint_keep: 3\n", "timeline:\n  enabled: false\n", "device: cpu\nprecision: fp32\n",
        "loss_scaling:\n  enabled: false\n  initial_scale: 65536.0\n", "cpu:\n  conv_algorithm: auto\n"})
    CHECK(contains(yaml, line));
}

TEST_CASE("the example decks in input_decks/ are valid and survive the round trip") {
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(decks_dir())) {
    if (entry.path().extension() != ".yaml") continue;
    CAPTURE(entry.path().string());
    const Deck d = load_deck(entry.path().string());
    CHECK(parse_deck(to_yaml(d), "resolved.yaml") == d);
    CHECK_NOTHROW(plan_network(d));
    ++count;
  }
  CHECK(count >= 5);
}

// ---- the U-Net plan ----------------------------------------------------------------------------

TEST_CASE("U-Net parameter counts match a hand count") {
  NetworkConfig net;
  net.depth = 2;
  net.base_channels = 4;
  net.channel_multiplier = 2;
  net.convs_per_level = 2;
  net.kernel_size = 3;
  // enc0: 1->4 (36+4), 4->4 (144+4); enc1: 4->8 (288+8), 8->8 (576+8); dec0: up 8->4 2x2 (128+4),
  // 8->4 (288+4), 4->4 (144+4); head 4->1 (4+1).
  net.norm = NormKind::none;
  CHECK(plan_unet(net, Shape{1, 16, 16}, 1, 1).parameters == 40 + 148 + 296 + 584 + 132 + 292 + 148 + 5);
  // Batch norm: no conv biases but the head's, and gamma + beta per channel after each of 6 convs.
  net.norm = NormKind::batch;
  CHECK(plan_unet(net, Shape{1, 16, 16}, 1, 1).parameters ==
        36 + 144 + 288 + 576 + 128 + 288 + 144 + 5 + 2 * (4 + 4 + 8 + 8 + 4 + 4));
  // 3D, no norm: 27 taps and a 2x2x2 transposed conv.
  net.norm = NormKind::none;
  CHECK(plan_unet(net, Shape{1, 8, 8, 8}, 1, 1).parameters == (27 * 4 + 4) + (108 * 4 + 4) + (27 * 32 + 8) +
                                                                  (27 * 64 + 8) + (8 * 32 + 4) +
                                                                  (27 * 32 + 4) + (108 * 4 + 4) + 5);
  // Strided-conv down-sampling (2x2, 4->4) and resize + 3x3 conv up-sampling (8->4).
  net.downsample = DownsampleKind::strided_conv;
  net.upsample = UpsampleKind::resize_conv;
  CHECK(plan_unet(net, Shape{1, 16, 16}, 1, 1).parameters ==
        40 + 148 + (64 + 4) + 296 + 584 + (288 + 4) + 292 + 148 + 5);
}

TEST_CASE("U-Net FLOPs at 256^2, depth 4, base 16 are 4.6 GFLOP forward and about 13.8 per training sample") {
  Deck d = parse_deck("problem: {pde: poisson2d, resolution: 256}\ntraining: {batch_size: 4}\n", "deck.yaml");
  const NetworkPlan plan = plan_unet(d);
  CHECK(plan.forward_flops_per_sample == doctest::Approx(4.6e9).epsilon(0.02));
  CHECK(plan.forward_flops_per_sample + plan.backward_flops_per_sample ==
        doctest::Approx(13.8e9).epsilon(0.02));
  CHECK(plan.flops_per_step ==
        doctest::Approx(4 * (plan.forward_flops_per_sample + plan.backward_flops_per_sample)).epsilon(1e-12));
  // 73.6 GFLOP forward at 1024^2 (docs/performance.md): the count scales with the number of nodes.
  d.problem.resolution = 1024;
  CHECK(plan_unet(d).forward_flops_per_sample == doctest::Approx(73.6e9).epsilon(0.02));
}

TEST_CASE("U-Net FLOPs and peak activation memory of a one-level network match a hand count") {
  NetworkConfig net;
  net.depth = 1;
  net.base_channels = 2;
  net.convs_per_level = 1;
  const NetworkPlan plan = plan_unet(net, Shape{1, 8, 8}, 1, 2);
  REQUIRE(plan.layers.size() == 3);  // conv 1->2, relu, head 2->1 on 8x8
  // Forward: conv 2*128*9, relu 128, head 2*64*2. Backward: the conv has no dx (its input is data).
  CHECK(plan.forward_flops_per_sample == 2304 + 128 + 256);
  CHECK(plan.backward_flops_per_sample == 2304 + 128 + 512);
  CHECK(plan.flops_per_step == 2 * (2688 + 2944));
  // Kept: input 64 + outputs 128 + 128 + 64 = 384 values. Worst backward point: the head's (dy 64 +
  // dx 128, all kept) or the relu's (outputs 64 freed; dy 128 + dx 128): 576 values, x batch 2 x 4 bytes.
  CHECK(plan.peak_activation_bytes == 576 * 2 * 4);
}

TEST_CASE("U-Net layers chain, and every concat joins the encoder output of its level") {
  for (auto down : {DownsampleKind::maxpool, DownsampleKind::avgpool, DownsampleKind::strided_conv}) {
    for (auto up : {UpsampleKind::transposed_conv, UpsampleKind::resize_conv}) {
      for (const Shape& input : {Shape{1, 32, 16}, Shape{1, 16, 8, 8}}) {
        NetworkConfig net;
        net.depth = 3;
        net.norm = NormKind::instance;
        net.downsample = down;
        net.upsample = up;
        CAPTURE(input.str());
        const NetworkPlan plan = plan_unet(net, input, 1, 1);
        CHECK(plan.output == input);
        CHECK(plan.layers.front().in == input);
        CHECK_FALSE(plan.layers.front().input_needs_grad);
        CHECK(plan.layers.front().inputs == std::vector<int>{PlanLayer::network_input});
        int concats = 0;
        for (size_t i = 1; i < plan.layers.size(); ++i) {
          const PlanLayer& l = plan.layers[i];
          CAPTURE(l.name);
          CHECK(l.in == plan.layers[i - 1].out);
          CHECK(l.input_needs_grad);
          if (l.op != LayerOp::concat) {
            CHECK(l.inputs == std::vector<int>{static_cast<int>(i) - 1});
            continue;
          }
          REQUIRE(l.inputs.size() == 2);
          CHECK(l.inputs[1] == static_cast<int>(i) - 1);
          ++concats;
          const PlanLayer& skip = plan.layers[static_cast<size_t>(l.inputs[0])];
          CHECK(skip.name.rfind(fmt::format("enc{}.", l.level), 0) == 0);
          CHECK(skip.op == LayerOp::activation);
          CHECK(skip.out[0] == l.in[0]);
          CHECK(l.out[0] == 2 * l.in[0]);
          for (int a = 1; a < l.in.rank(); ++a) CHECK(skip.out[a] == l.in[a]);
        }
        CHECK(concats == net.depth - 1);
      }
    }
  }
}

TEST_CASE("a grid that the U-Net cannot halve depth-1 times is refused, naming resolution and depth") {
  Deck d = parse_deck("problem: {pde: poisson2d, resolution: 65}", "deck.yaml");
  CHECK_THROWS_WITH_AS(
      plan_network(d),
      "problem.resolution = 65 is not divisible by 2^(network.depth - 1) = 8: a U-Net of "
      "network.depth 4 halves the grid 3 times; use a multiple of 8 such as 64 or 72 or a smaller "
      "network.depth",
      UserError);
  d = parse_deck("problem: {pde: burgers1d, resolution: 64, time_resolution: 50}", "deck.yaml");
  CHECK_THROWS_WITH_AS(
      plan_network(d),
      "problem.time_resolution = 50 is not divisible by 2^(network.depth - 1) = 8: a U-Net of "
      "network.depth 4 halves the grid 3 times; use a multiple of 8 such as 48 or 56 or a smaller "
      "network.depth",
      UserError);
  d = parse_deck("problem: {pde: poisson2d, resolution: 66}\nnetwork: {depth: 2}", "deck.yaml");
  CHECK_NOTHROW(plan_network(d));
}

// ---- optimizer phases and the optimizers' own keys -------------------------------------------

TEST_CASE("optimizer.then switches optimizers after after_steps, nested for more phases") {
  const Deck d = parse_deck(with_minimal("optimizer:\n"
                                         "  type: adam\n"
                                         "  lr: 1e-3\n"
                                         "  then:\n"
                                         "    after_steps: 100\n"
                                         "    type: lbfgs\n"
                                         "    lr: 1\n"
                                         "    history: 5\n"
                                         "    damping: true\n"
                                         "    then:\n"
                                         "      after_steps: 150\n"
                                         "      type: lamb\n"
                                         "      max_trust_ratio: 10\n"
                                         "      schedule: {type: cosine}\n"),
                            "deck.yaml");
  CHECK(d.optimizer.type == OptimizerKind::adam);
  REQUIRE(d.optimizer.phases.size() == 2);
  const OptimizerPhase &second = d.optimizer.phases[0], &third = d.optimizer.phases[1];
  CHECK(second.after_steps == 100);
  CHECK(second.settings.type == OptimizerKind::lbfgs);
  CHECK(second.settings.lr == 1);
  CHECK(second.settings.lbfgs.history == 5);
  CHECK(second.settings.lbfgs.damping);
  CHECK(third.after_steps == 150);
  CHECK(third.settings.type == OptimizerKind::lamb);
  CHECK(third.settings.lamb.max_trust_ratio == 10);
  CHECK(third.settings.schedule.type == ScheduleKind::cosine);
  CHECK(third.settings.lr == 1e-3);  // a phase's keys start from the defaults, not from the phase before
}

TEST_CASE("optimizer phases are validated like the optimizer section, with their own key paths") {
  CHECK(error_of(with_minimal("optimizer:\n  then: {type: lbfgs}\n")) ==
        "deck.yaml: error: missing required key 'optimizer.then.after_steps' (the number of completed "
        "training steps after which this optimizer takes over)");
  CHECK(error_of(with_minimal("optimizer:\n  then:\n    after_steps: 100\n    then: {after_steps: 50}\n")) ==
        "deck.yaml:7:25: error: 'optimizer.then.then.after_steps' is 50; it must be greater than the step "
        "at which the phase before starts (100)");
  CHECK(error_of(with_minimal("optimizer:\n  then: {after_steps: 0}\n")) ==
        "deck.yaml:5:23: error: 'optimizer.then.after_steps' must be >= 1, got 0");
  CHECK(error_of(with_minimal("optimizer:\n  then: {after_steps: 10, type: lbfgs, beta1: 0.5}\n")) ==
        "deck.yaml:5:40: error: 'optimizer.then.beta1' applies only to optimizer types adam, adamw and lamb "
        "(optimizer.then.type is 'lbfgs')");
  CHECK(
      error_of(with_minimal("optimizer:\n  then: {after_steps: 10, type: lbfgs, grad_clip: 1}\n")) ==
      "deck.yaml:5:51: error: 'optimizer.then.grad_clip' does not apply to lbfgs: clipping would change the "
      "gradient its line search measures (leave it 0)");
  CHECK(contains(error_of(with_minimal("optimizer:\n  after_steps: 10\n")),
                 "unknown key 'optimizer.after_steps'"));
}

TEST_CASE("lars, lamb and lbfgs read their own keys: eps means the trust-ratio term for lars") {
  const Deck lars = parse_deck(with_minimal("optimizer: {type: lars, eps: 1e-6}\n"), "deck.yaml");
  CHECK(lars.optimizer.lars.eps == 1e-6);
  CHECK(lars.optimizer.adam.eps == 1e-8);
  const Deck adam = parse_deck(with_minimal("optimizer: {type: adam, eps: 1e-6}\n"), "deck.yaml");
  CHECK(adam.optimizer.adam.eps == 1e-6);
  CHECK(adam.optimizer.lars.eps == 1e-8);
  CHECK(error_of(with_minimal("optimizer: {type: sgd, eps: 1e-6}\n")) ==
        "deck.yaml:4:24: error: 'optimizer.eps' applies only to optimizer types adam, adamw, lamb and lars "
        "(optimizer.type is 'sgd')");
  CHECK(error_of(with_minimal("optimizer: {type: adam, max_trust_ratio: 1}\n")) ==
        "deck.yaml:4:25: error: 'optimizer.max_trust_ratio' applies only to optimizer type lamb "
        "(optimizer.type is 'adam')");
  CHECK(error_of(with_minimal("optimizer: {type: lbfgs, grad_clip: 1}\n")) ==
        "deck.yaml:4:37: error: 'optimizer.grad_clip' does not apply to lbfgs: clipping would change the "
        "gradient its line search measures (leave it 0)");
  const Deck lbfgs =
      parse_deck(with_minimal("optimizer: {type: lbfgs, curvature_eps: 1e-4, damping: true}\n"), "deck.yaml");
  CHECK(lbfgs.optimizer.lbfgs.curvature_eps == 1e-4);
  CHECK(lbfgs.optimizer.lbfgs.damping);
}

TEST_CASE("to_yaml writes the optimizer phases nested and the new optimizer keys: they read back the same") {
  for (const std::string& text :
       {with_minimal(
            "optimizer:\n  type: adamw\n  lr: 1e-3\n  then:\n    after_steps: 100\n    type: lbfgs\n"
            "    lr: 0.5\n    curvature_eps: 1e-6\n    damping: true\n    then: {after_steps: 150, type: "
            "lars, eps: 1e-5, trust_coefficient: 0.01, schedule: {type: step}}\n"),
        with_minimal("optimizer: {type: lamb, max_trust_ratio: 10, beta1: 0.8}\n")}) {
    CAPTURE(text);
    const Deck d = parse_deck(text, "deck.yaml");
    const std::string yaml = to_yaml(d);
    CAPTURE(yaml);
    const Deck again = parse_deck(yaml, "resolved.yaml");
    CHECK(again == d);
    CHECK(to_yaml(again) == yaml);
  }
  const std::string yaml = to_yaml(parse_deck(
      with_minimal("optimizer: {type: sgd, then: {after_steps: 7, type: lbfgs, then: {after_steps: 9}}}\n"),
      "deck.yaml"));
  CHECK(contains(yaml, "  then:\n    after_steps: 7\n    type: lbfgs\n"));
  CHECK(contains(yaml, "    then:\n      after_steps: 9\n      type: adam\n"));
}

// The input deck as typed structs, one per section. The default member values below are THE
// defaults (the reader starts from them, docs/deck.md lists them); load_deck() reads a YAML file,
// applies `key.path=value` overrides and validates everything, throwing pdegen::UserError with
// every problem found ("deck.yaml:12:3: error: ..."); to_yaml() writes the fully resolved deck.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "config/choices.hpp"
#include "core/shape.hpp"

namespace pdegen {

// problem.* keys that only poisson2d / poisson3d take.
struct PoissonSettings {
  double correlation_length = 0.5;
  int kl_modes = 4;
  double sigma = 1.0;      // scale of log nu
  double omega_max = 3.0;  // omega_k ~ U[-omega_max, omega_max]
  double source = 0.0;     // constant f
  bool operator==(const PoissonSettings&) const = default;
};

// problem.* keys that only burgers1d takes.
struct BurgersSettings {
  int time_resolution = 0;  // nodes in t; the reader resolves 0 to problem.resolution
  double t_final = 0.5;
  double viscosity = 0.0;
  int ic_terms = 1;
  IcSampling ic_sampling = IcSampling::random;
  double c_min = 1.0;
  double c_max = 4.0;
  BoundaryTreatment boundary = BoundaryTreatment::exact;
  double boundary_factor = 64.0;
  bool operator==(const BurgersSettings&) const = default;
};

struct ProblemConfig {
  PdeKind pde = PdeKind::poisson2d;      // required in a deck
  int resolution = 0;                    // required in a deck: nodes per axis (burgers: in x)
  LossKind loss = LossKind::energy;      // burgers1d and the inverse map: residual
  ProblemMap map = ProblemMap::forward;  // poisson: coefficient -> solution, or solution -> coefficient
  PoissonSettings poisson;
  BurgersSettings burgers;

  bool is_poisson() const { return pde == PdeKind::poisson2d || pde == PdeKind::poisson3d; }
  bool is_inverse() const { return is_poisson() && map == ProblemMap::inverse; }
  int spatial_dims() const { return pde == PdeKind::poisson3d ? 3 : 2; }
  bool operator==(const ProblemConfig&) const = default;
};

// The network's output field of one sample (the solution): [1, Ny, Nx], [1, Nz, Ny, Nx] or, for the
// space-time Burgers problem, [1, Nt, Nx].
Shape sample_shape(const ProblemConfig& problem);
// The grid of sample_shape as logs print it: "128x128", "64x64x64", "65x128" (Nt x Nx).
std::string grid_text(const ProblemConfig& problem);
// The network's input of one sample: the coefficient [1, ...] (poisson), or for burgers1d
// [3, Nt, Nx]: the initial condition b(x), x and t / T at every node (docs/theory.md, "burgers1d").
Shape input_shape(const ProblemConfig& problem);

struct NetworkConfig {
  NetworkKind type = NetworkKind::unet;
  int depth = 4;  // resolution levels including the bottleneck
  int base_channels = 16;
  int channel_multiplier = 2;
  int convs_per_level = 2;
  int kernel_size = 3;
  NormKind norm = NormKind::none;  // physics default: see docs/deck.md
  ActivationKind activation = ActivationKind::relu;
  DownsampleKind downsample = DownsampleKind::maxpool;
  UpsampleKind upsample = UpsampleKind::transposed_conv;
  // fc_densenet: a preset, or (custom) the growth rate and the layers of each dense block, down
  // path first and the bottleneck last (the up path mirrors the down path).
  DenseNetPreset preset = DenseNetPreset::fc56;
  int growth_rate = 12;
  std::vector<int> block_layers{4, 4, 4, 4, 4, 4};
  int first_channels = 48;  // of the first convolution
  bool operator==(const NetworkConfig&) const = default;
};

// optimizer.* keys of adam, adamw and lamb.
struct AdamSettings {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  bool operator==(const AdamSettings&) const = default;
};

// optimizer.* keys of sgd and lars.
struct MomentumSettings {
  double momentum = 0.9;
  bool nesterov = false;
  bool operator==(const MomentumSettings&) const = default;
};

// optimizer.* keys of lars only (You, Gitman & Ginsburg 2017).
struct LarsSettings {
  double trust_coefficient = 0.001;
  double eps = 1e-8;  // in the denominator of the trust ratio (the deck's `eps` for lars)
  bool operator==(const LarsSettings&) const = default;
};

// optimizer.* keys of lamb only (You et al. 2019).
struct LambSettings {
  double max_trust_ratio = 0.0;  // upper clamp of ||w|| / ||update||; 0 = no clamp
  bool operator==(const LambSettings&) const = default;
};

// optimizer.* keys of lbfgs.
struct LbfgsSettings {
  int history = 10;
  int max_iterations = 20;
  int max_evaluations = 25;
  LineSearch line_search = LineSearch::strong_wolfe;
  double tolerance_grad = 1e-7;
  double tolerance_change = 1e-9;
  double curvature_eps = 1e-10;  // a pair (s, y) with s.y <= curvature_eps * y.y is skipped
  bool damping = false;          // Powell damping of y before the curvature test
  bool shard_history = false;
  LbfgsBatch batch = LbfgsBatch::fixed;
  bool operator==(const LbfgsSettings&) const = default;
};

struct ScheduleConfig {
  ScheduleKind type = ScheduleKind::constant;
  int64_t warmup_steps = 0;
  int64_t step_size = 1000;  // step only
  double gamma = 0.5;        // step only
  double min_lr = 0.0;       // cosine only
  bool operator==(const ScheduleConfig&) const = default;
};

// One optimizer with its settings: the optimizer section itself, or one of its later phases.
struct OptimizerSettings {
  OptimizerKind type = OptimizerKind::adam;
  double lr = 1e-3;
  double weight_decay = 0.0;
  double grad_clip = 0.0;  // global-norm clip, 0 = off (not for lbfgs)
  AdamSettings adam;
  MomentumSettings momentum;
  LarsSettings lars;
  LambSettings lamb;
  LbfgsSettings lbfgs;
  ScheduleConfig schedule;  // runs over its own phase: step 0 is the phase's first step
  bool operator==(const OptimizerSettings&) const = default;
};

// A later phase (the deck's optimizer.then, nested): from training step `after_steps` on (0-based:
// after that many completed steps), this optimizer replaces the one before, with fresh state.
struct OptimizerPhase {
  int64_t after_steps = 0;
  OptimizerSettings settings;
  bool operator==(const OptimizerPhase&) const = default;
};

// The optimizer section: the settings of the first phase, then the later phases by increasing
// after_steps (empty: one optimizer for the whole run). optim/phases.hpp picks the phase of a step.
struct OptimizerConfig : OptimizerSettings {
  std::vector<OptimizerPhase> phases;
  bool operator==(const OptimizerConfig&) const = default;
};

struct TrainingConfig {
  int64_t steps = 1000;
  int64_t batch_size = 16;  // global, over all ranks
  uint64_t seed = 0;
  int micro_batches = 1;
  int64_t log_every = 10;
  int64_t checkpoint_every = 0;     // 0 = final checkpoint only
  std::string restart = "none";     // none | latest | a checkpoint path
  bool allow_deck_changes = false;  // restart although the checkpoint's deck differs in trajectory keys
  int64_t fp32_after_step = 0;      // with 16-bit precision, the steps after this one run in fp32; 0 = none
  ObjectiveKind objective = ObjectiveKind::physics;
  bool operator==(const TrainingConfig&) const = default;
};

// The data section: training from a dataset (training.objective data or hybrid).
struct DataConfig {
  std::string files;            // a path or a glob; required
  std::string input = "auto";   // dataset path; auto = the problem's (/fields/log_nu for the forward map)
  std::string target = "auto";  // dataset path; auto = the problem's (/fields/u_ref for the forward map)
  double validation_fraction = 0.0;  // the last records (in file order), held out from training
  DataLossKind loss = DataLossKind::mse;
  double huber_delta = 1.0;
  double weight = 1.0;  // hybrid: physics loss + weight * data loss
  bool shuffle = true;
  int prefetch = 2;  // micro-batches read ahead by the reader thread
  bool operator==(const DataConfig&) const = default;
};

// multigrid.level<k>: one resolution of a multigrid training run (level 0 is the coarsest). The
// reader resolves resolution, steps and batch_size; lr 0 means optimizer.lr.
struct MultigridLevel {
  int resolution = 0;      // nodes per axis (burgers: in x; t scales with it)
  int64_t steps = 0;       // optimizer steps per visit of this level
  double stop_error = 0;   // a visit ends once the evaluation's mean rel_l2 is at most this; 0 = never
  int64_t batch_size = 0;  // global
  double lr = 0;
  bool operator==(const MultigridLevel&) const = default;
};

// multigrid.*: training on a hierarchy of resolutions, visited in the order of a cycle, with the
// same network throughout (its weights carry over). levels == 1 (the section absent): one level,
// the deck's own resolution, steps, batch and learning rate.
struct MultigridConfig {
  int levels = 1;
  CycleKind cycle = CycleKind::half_v;
  OptimizerCarry optimizer_state = OptimizerCarry::reset;
  bool deepen = false;  // a coarser level's U-Net has one level fewer per halving (its inner levels)
  std::vector<MultigridLevel> level;  // `levels` entries, coarsest first (empty when levels == 1)
  bool enabled() const { return levels > 1; }
  bool operator==(const MultigridConfig&) const = default;
};

struct ParallelConfig {
  double bucket_mb = 4.0;
  double first_bucket_mb = 1.0;
  bool overlap = true;
  Hierarchical hierarchical = Hierarchical::automatic;
  Compression compression = Compression::none;
  SyncBatchNorm sync_batchnorm = SyncBatchNorm::automatic;  // auto: on when ranks > 1
  int64_t consistency_every = 100;                          // 0 = never
  double collective_timeout = 600;                          // seconds; 0 = no watchdog
  bool operator==(const ParallelConfig&) const = default;
};

struct EvaluationConfig {
  int64_t every = 100;  // steps; 0 = only at the end
  int resolution = 0;   // nodes per axis of the evaluation samples; 0 = the resolution being trained
  int samples = 16;
  double solver_tolerance = 1e-10;
  bool operator==(const EvaluationConfig&) const = default;
};

struct OutputConfig {
  std::string dir = "runs/default";
  bool fields = true;
  int field_samples = 4;
  int checkpoint_keep = 3;
  ExistingRun existing = ExistingRun::refuse;  // what train does with a directory holding another run
  bool operator==(const OutputConfig&) const = default;
};

// cuda.*: how cuDNN may compute (device: cuda only; ignored on the CPU).
struct CudaConfig {
  ConvMathKind conv_math = ConvMathKind::tf32;  // tensor cores for fp32 convolutions, PyTorch's default
  double workspace_mb = 256;                    // largest cuDNN workspace an algorithm may use
  bool algo_search = true;                      // time the algorithms once per shape (cudnnFind)
  bool operator==(const CudaConfig&) const = default;
};

// cpu.*: how oneDNN may compute (device: cpu; also predict and the evaluation).
struct CpuConfig {
  ConvAlgorithmKind conv_algorithm = ConvAlgorithmKind::automatic;  // Winograd where it is faster
  bool operator==(const CpuConfig&) const = default;
};

// loss_scaling.*: dynamic loss scaling (optim/loss_scaler.hpp), on by default for precision fp16,
// whose 5-bit exponent flushes small gradients to zero without it. The loss gradient is multiplied
// by the scale; the summed fp32 gradient is divided by it and checked for inf/nan before the
// optimizer; an overflowed step is skipped and the scale backs off, and it grows again after
// growth_interval clean steps. With power-of-two factors the unscaled gradient is the fp32 one bit
// for bit, so enabling it in fp32 changes nothing but the overflow checks.
struct LossScalingConfig {
  bool enabled = false;
  double initial_scale = 65536.0;  // 2^16
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
  double min_scale = 1.0;
  double max_scale = 16777216.0;  // 2^24
  bool operator==(const LossScalingConfig&) const = default;
};

struct TimelineConfig {
  bool enabled = false;
  int64_t first_step = 2;  // 1-based; the first steps pay one-time setup (primitive creation)
  int64_t steps = 5;       // steps recorded
  bool operator==(const TimelineConfig&) const = default;
};

struct Deck {
  ProblemConfig problem;
  NetworkConfig network;
  OptimizerConfig optimizer;
  TrainingConfig training;
  DataConfig data;
  MultigridConfig multigrid;
  ParallelConfig parallel;
  EvaluationConfig evaluation;
  OutputConfig output;
  TimelineConfig timeline;
  CudaConfig cuda;
  CpuConfig cpu;
  Device device = Device::cpu;
  DType precision = DType::f32;
  LossScalingConfig loss_scaling;
  bool operator==(const Deck&) const = default;
};

// The activation type of 0-based training step `step` (and of the evaluation after it): the deck's
// precision, or fp32 once step >= training.fp32_after_step (when that is set).
inline DType precision_at(const Deck& d, int64_t step) {
  return d.training.fp32_after_step > 0 && step >= d.training.fp32_after_step ? DType::f32 : d.precision;
}

// Reads the deck file at `path`, applies the overrides ("key.path=value", value parsed as YAML, in
// order, before validation) and validates. Error messages start with `path` as given.
Deck load_deck(const std::string& path, const std::vector<std::string>& overrides = {});
// The same from deck text; `name` stands for the file in error messages.
Deck parse_deck(std::string_view text, std::string_view name, const std::vector<std::string>& overrides = {});

// The resolved deck: every key with its effective value, sections and keys in the documented
// order, only the keys that apply to the chosen pde / types. parse_deck(to_yaml(d)) == d.
std::string to_yaml(const Deck& deck);

}  // namespace pdegen

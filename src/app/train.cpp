// pdegen train: the run around the Trainer (app/trainer.hpp) on every rank: the run directory,
// device and reducer set-up, the visits of a multigrid cycle (one without multigrid), restart,
// periodic evaluation against the reference solver, the progress line, history.csv, summary.json,
// checkpoints with exact restart, the fields file at the end, and clean stops on SIGINT/SIGTERM or
// divergence.
#include "app/train.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <optional>
#include <pdegen/build_info.hpp>

#include "app/data_objective.hpp"
#include "app/evaluation.hpp"
#include "app/multigrid_schedule.hpp"
#include "app/run_directory.hpp"
#include "app/run_files.hpp"
#include "app/stop_signal.hpp"
#include "app/trainer.hpp"
#include "app/verbs.hpp"
#include "backend/cpu/dnnl_context.hpp"
#include "backend/cuda/cuda_context.hpp"
#include "core/allocator.hpp"
#include "core/log.hpp"
#include "core/timer.hpp"
#include "core/watchdog.hpp"
#include "io/atomic_file.hpp"
#include "nn/network_factory.hpp"
#include "nn/unet_plan.hpp"
#include "optim/loss_scaler.hpp"
#include "parallel/consistency.hpp"
#include "parallel/nccl_communicator.hpp"

namespace pdegen::app {

namespace fs = std::filesystem;

namespace {

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const auto t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02}m", t / 3600, t / 60 % 60);
  if (t >= 60) return fmt::format("{}m{:02}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

// One GPU per rank, chosen by the rank's place on its (physical, never simulated) node, with the
// deck's cuDNN settings; NCCL needs a GPU of its own for every rank of a node.
void set_up_device(const Deck& deck, const Communicator& comm) {
  if (deck.device != Device::cuda) return;
  cuda::select_device(physical_node_rank(comm));
  switch (deck.cuda.conv_math) {
    case ConvMathKind::fp32:
      cuda::set_conv_math(cuda::ConvMath::fp32);
      break;
    case ConvMathKind::tf32:
      cuda::set_conv_math(cuda::ConvMath::tf32);
      break;
    case ConvMathKind::fp16_conversion:
      cuda::set_conv_math(cuda::ConvMath::fp16_conversion);
      break;
  }
  cuda::set_conv_workspace_limit(static_cast<size_t>(deck.cuda.workspace_mb * 1024 * 1024));
  cuda::set_conv_algo_search(deck.cuda.algo_search);
  spdlog::info("device: {}", cuda::describe_device());
  std::string reason;
  if (comm.size() > 1 && !nccl_usable(comm, &reason))
    throw UserError(
        fmt::format("device: cuda on {} ranks needs one GPU per rank for NCCL: {}", comm.size(), reason));
}

// Synchronized batch norm: statistics over the whole (micro-)batch, whatever the rank count.
bool use_sync_batchnorm(const Deck& deck, const Communicator& comm) {
  const int64_t B = deck.training.batch_size;
  const int micro = deck.training.micro_batches;
  const bool sync_bn = deck.network.norm == NormKind::batch && comm.size() > 1 &&
                       deck.parallel.sync_batchnorm != SyncBatchNorm::off;
  if (sync_bn && B / micro < comm.size())
    throw UserError(fmt::format(
        "synchronized batch norm needs a sample on every rank in every micro-batch, but training.batch_size "
        "({}) / training.micro_batches ({}) is below the {} ranks: raise the batch, or lower micro_batches "
        "or "
        "the rank count",
        B, micro, comm.size()));
  if (!sync_bn && deck.network.norm == NormKind::batch && comm.size() > 1)
    spdlog::warn(
        "parallel.sync_batchnorm is off: each rank normalises with its own samples' statistics, so "
        "the training depends on the rank count");
  return sync_bn;
}

// The checkpoint to restart from: an explicit file, the newest of this run directory, or none.
std::string restart_file(const Deck& deck, const fs::path& ckpt_dir) {
  const std::string& restart = deck.training.restart;
  if (restart == "none") return {};
  if (restart != "latest") return restart;
  std::string latest = latest_checkpoint(ckpt_dir.string());
  if (latest.empty())
    spdlog::info("training.restart is 'latest' but {} has no checkpoint: starting at step 0",
                 ckpt_dir.string());
  return latest;
}

// Rank 0 writes every rank's events as one Chrome trace.
void write_timeline(const Timeline& timeline, const fs::path& path, const Communicator& comm) {
  const auto parts = comm.gather(timeline.events_json(comm.rank()));
  if (comm.rank() != 0) return;
  std::string json = "{\"displayTimeUnit\": \"ms\", \"traceEvents\": [";
  for (size_t r = 0; r < parts.size(); ++r) json += (r ? ",\n" : "\n") + parts[r];
  write_text_file_atomically(path.string(), json + "\n]}\n");
  spdlog::info("timeline: {} (open in https://ui.perfetto.dev or chrome://tracing)", path.string());
}

// What the loop has done so far, for the progress line and summary.json.
struct Progress {
  int64_t start = 0, completed = 0, skipped_steps = 0;
  int64_t window_evals = 0, total_evals = 0;  // forward + backward passes of the whole batch
  double window_time = 0, train_time = 0;
  double window_samples = 0, total_samples = 0;  // samples through forward + backward
  double window_flops = 0, total_flops = 0;      // of those passes
  double step_flops = 0;                         // sum of the steps' FLOPs (one pass each), for the ETA
  double loss = NAN, grad_norm = NAN;            // of the last step
  ErrorSummary eval{NAN, NAN, 0, {}};
  double val_loss = NAN;  // the data loss of the dataset's held-out records, at the last evaluation
  std::string status = "completed", message;
  int exit_code = 0;
};

// The network being trained and the gradient reducer over its parameters: one for the whole run,
// or with multigrid.deepen one per depth (the network grows with the resolution).
struct Net {
  std::unique_ptr<Model> model;
  std::unique_ptr<GradientReducer> reducer;
  int depth = 0;
};

// One visit of a multigrid cycle (the whole run without multigrid): the level's deck, network plan
// (its FLOPs), network, problem, objective and Trainer.
struct Visit {
  int index = 0, level = 0;
  Deck deck;
  NetworkPlan plan;
  std::shared_ptr<Net> net;
  std::unique_ptr<Problem> problem;
  std::unique_ptr<Objective> objective;
  DataObjective* data = nullptr;  // the objective, when it trains from a dataset
  std::unique_ptr<Trainer> trainer;
  bool finished = false;               // its steps are done, or an evaluation reached its stop_error
  std::string ended_by;                // "steps", "stop_error" or the run's status
  double train_seconds = 0;            // in this process
  ErrorSummary eval{NAN, NAN, 0, {}};  // the last evaluation during the visit
};

// Held-out samples at one resolution, with the problem they belong to.
struct EvaluationSet {
  std::unique_ptr<Problem> problem;
  SampleSet set;
};

// Everything the step loop works with, set up once; `visit` is the visit running.
struct Run {
  Run(const Deck& d, const std::string& yaml, const Communicator& c, Timeline& t)
      : deck(d), deck_yaml(yaml), comm(c), timeline(t) {}
  const Deck& deck;
  const std::string& deck_yaml;
  const Communicator& comm;
  Timeline& timeline;
  bool sync_bn = false;                          // synchronized batch norm
  const data::DatasetIndex* dataset = nullptr;   // training.objective data or hybrid
  std::vector<int> visits;                       // the levels of the cycle, in order
  std::vector<double> level_flops;               // FLOPs of one step at each level
  int64_t total_steps = 0;                       // of all visits, when none ends early
  std::map<int, EvaluationSet> evaluation_sets;  // by resolution, made when first needed
  HistoryWriter* history = nullptr;
  fs::path dir, ckpt_dir;
  Timer wall;
  std::unique_ptr<Visit> visit;
  std::vector<JsonObject> visit_reports;  // of the visits this process ran
};

// Seconds left: the remaining steps' FLOPs at the rate of the steps so far (levels differ in cost).
double eta_seconds(const Run& run, const Progress& p) {
  double remaining = 0;
  for (size_t v = static_cast<size_t>(run.visit->index); v < run.visits.size(); ++v) {
    const int level = run.visits[v];
    int64_t steps = level_deck(run.deck, level).training.steps;
    if (static_cast<int>(v) == run.visit->index)
      steps = run.visit->trainer->first_step() + run.visit->deck.training.steps - p.completed;
    remaining += static_cast<double>(steps) * run.level_flops[static_cast<size_t>(level)];
  }
  return p.step_flops > 0 ? p.train_time / p.step_flops * remaining : NAN;
}

// The progress line and the history.csv row of the step just completed.
void log_step(Run& run, Progress& p, const StepOutcome& o, bool evaluated) {
  const double sps = p.window_samples / p.window_time;
  const double gflops = p.window_flops / p.window_time / 1e9;
  const int width = static_cast<int>(std::to_string(run.total_steps).size());
  std::string line = fmt::format("step {:>{}}/{}", p.completed, width, run.total_steps);
  const Visit& visit = *run.visit;
  if (run.deck.multigrid.enabled())
    line += fmt::format(" | level {} ({})", visit.level, grid_text(visit.deck.problem));
  line += fmt::format(" | loss {:.4e} | lr {:.1e}", p.loss, o.lr);
  if (evaluated) line += fmt::format(" | rel_l2 {:.3f}% (max {:.3f}%)", 100 * p.eval.mean, 100 * p.eval.max);
  if (evaluated && !std::isnan(p.val_loss)) line += fmt::format(" | val_loss {:.4e}", p.val_loss);
  if (const LossScaler* scaler = visit.trainer->scaler())
    line += fmt::format(" | scale {:g}", scaler->scale());
  line += fmt::format(" | {:.0f} samples/s | {:.1f} GFLOP/s | ETA {}", sps, gflops,
                      format_duration(eta_seconds(run, p)));
  spdlog::info("{}", line);
  if (run.history)
    run.history->row({std::to_string(p.completed), fmt::format("{:.3f}", run.wall.seconds()),
                      fmt::format("{:.9e}", p.loss), fmt::format("{:.6e}", o.lr),
                      fmt::format("{:.6e}", p.grad_norm), evaluated ? fmt::format("{:.6e}", p.eval.mean) : "",
                      evaluated ? fmt::format("{:.6e}", p.eval.max) : "", fmt::format("{:.2f}", sps),
                      fmt::format("{:.2f}", gflops), std::to_string(visit.level),
                      std::to_string(visit.deck.problem.resolution),
                      evaluated && !std::isnan(p.val_loss) ? fmt::format("{:.6e}", p.val_loss) : ""});
  p.window_time = 0;
  p.window_evals = 0;
  p.window_samples = 0;
  p.window_flops = 0;
}

// The held-out samples at `resolution` (made on first use: every rank asks in the same order).
EvaluationSet& evaluation_set(Run& run, int resolution) {
  auto it = run.evaluation_sets.find(resolution);
  if (it != run.evaluation_sets.end()) return it->second;
  EvaluationSet e;
  e.problem = make_problem(at_resolution(run.deck.problem, resolution), run.deck.evaluation);
  e.set = make_sample_set(*e.problem, run.deck.training.seed, eval_index_base, run.deck.evaluation.samples,
                          run.comm);
  if (!e.set.indices.empty()) {
    int lo = 1 << 30, hi = 0;
    for (int it2 : e.set.report.iterations) lo = std::min(lo, it2), hi = std::max(hi, it2);
    spdlog::info(
        "reference solutions at {}: {} evaluation samples on this rank in {:.2f} s ({}-{} iterations, {})",
        grid_text(at_resolution(run.deck.problem, resolution)), e.set.indices.size(), e.set.report.seconds,
        lo, hi, e.set.report.method);
  }
  return run.evaluation_sets.emplace(resolution, std::move(e)).first->second;
}

// The activation type the network runs in after `completed` steps: that of the last step.
DType precision_after(const Deck& deck, int64_t completed) {
  return precision_at(deck, std::max<int64_t>(completed - 1, 0));
}

// The error of the network after `completed` steps on the held-out samples at `resolution`.
ErrorSummary evaluate_at(Run& run, int resolution, int64_t completed) {
  const EvaluationSet& e = evaluation_set(run, resolution);
  const Tensor prediction = e.set.indices.empty()
                                ? Tensor()
                                : predict(*run.visit->net->model, *e.problem, e.set.input,
                                          precision_after(run.deck, completed), run.deck.training.batch_size);
  return summarize_error(*e.problem, e.set, prediction, run.comm);
}

ErrorSummary evaluate(Run& run, int64_t completed) {
  return evaluate_at(run, evaluation_resolution(run.deck, run.visit->deck), completed);
}

// The held-out error, and the data loss of the dataset's held-out records when it has some.
void evaluate_into(Run& run, Progress& p) {
  p.eval = evaluate(run, p.completed);
  if (run.visit->data)
    p.val_loss =
        run.visit->data->validation_loss(*run.visit->net->model, precision_after(run.deck, p.completed),
                                         run.deck.training.batch_size, run.comm);
}

// summary.json's multigrid part: the final network's error at every level and the visits this
// process ran.
JsonObject multigrid_report(Run& run, const Progress& p) {
  std::vector<JsonObject> levels;
  for (int l = 0; l < run.deck.multigrid.levels; ++l) {
    const int resolution = run.deck.multigrid.level[static_cast<size_t>(l)].resolution;
    const ErrorSummary e = evaluate_at(run, resolution, p.completed);  // collective
    spdlog::info("level {} ({}): rel_l2 mean {:.3f}% max {:.3f}%", l,
                 grid_text(at_resolution(run.deck.problem, resolution)), 100 * e.mean, 100 * e.max);
    JsonObject level;
    level.add("level", l).add("resolution", resolution).add("rel_l2_mean", e.mean).add("rel_l2_max", e.max);
    levels.push_back(level);
  }
  JsonObject report;
  report.add("cycle", std::string(name_of(run.deck.multigrid.cycle)))
      .add("optimizer_state", std::string(name_of(run.deck.multigrid.optimizer_state)))
      .add("levels", levels)
      .add("visits", run.visit_reports);
  return report;
}

// summary.json (rank 0) and the closing log line.
void write_summary(Run& run, const Progress& p, const std::string& checkpoint) {
  const Deck& deck = run.deck;
  const Communicator& comm = run.comm;
  const double wall = run.wall.seconds();
  // Reduction figures (of the last visit's network), averaged over ranks.
  const GradientReducer& reducer = *run.visit->net->reducer;
  const ReducerStats& rs = reducer.stats();
  const double comm_seconds = comm.sum(rs.comm_seconds) / comm.size();
  const double exposed_seconds = comm.sum(rs.exposed_seconds) / comm.size();
  const double exposed_fraction = comm_seconds > 0 ? std::min(1.0, exposed_seconds / comm_seconds) : 0.0;
  if (comm.size() > 1)
    spdlog::info(
        "gradient reduction: {:.3f} s in {} reductions, {:.1f}% of it exposed (not hidden by backward)",
        comm_seconds, rs.steps, 100 * exposed_fraction);
  const bool multigrid = deck.multigrid.enabled() && p.status != "diverged";
  const JsonObject levels = multigrid ? multigrid_report(run, p) : JsonObject();  // collective
  if (comm.rank() != 0) return;
  const double steps_run = static_cast<double>(p.completed - p.start);
  const auto mem = CachingAllocator::host().stats();
  const LossScaler* scaler = run.visit->trainer->scaler();
  JsonObject eval_json, throughput, memory, summary;
  eval_json.add("rel_l2_mean", p.eval.mean)
      .add("rel_l2_max", p.eval.max)
      .add("samples", p.eval.samples)
      .add("resolution", evaluation_resolution(deck, run.visit->deck));
  throughput.add("samples_per_s", p.train_time > 0 ? p.total_samples / p.train_time : 0.0)
      .add("gflops", p.train_time > 0 ? p.total_flops / p.train_time / 1e9 : 0.0)
      .add("step_seconds", steps_run > 0 ? p.train_time / steps_run : 0.0)
      .add("evaluations", p.total_evals);
  memory.add("peak_rss_mb", peak_rss_mb())
      .add("allocator_peak_mb", static_cast<double>(mem.peak_in_use) / (1024.0 * 1024.0));
  if (deck.device == Device::cuda)
    memory.add("device_peak_mb", static_cast<double>(cuda::memory_stats().peak_in_use) / (1024.0 * 1024.0));
  summary.add("status", p.status)
      .add("message", p.message)
      .add("steps", p.completed)
      .add("start_step", p.start)
      .add("wall_seconds", wall)
      .add("train_seconds", p.train_time)
      .add("final_loss", p.loss)
      .add("eval", eval_json)
      .add("throughput", throughput)
      .add("memory", memory)
      .add("ranks", comm.size())
      .add("comm_seconds", comm_seconds)
      .add("comm_exposed_seconds", exposed_seconds)
      .add("comm_exposed_fraction", exposed_fraction)
      .add("bucket_count", static_cast<int64_t>(reducer.schedule().buckets.size()))
      .add("reduction", reducer.describe())
      .add("device", std::string(device_name(deck.device)))
      .add("precision", std::string(dtype_name(deck.precision)))
      .add("loss_scale", scaler ? scaler->scale() : 1.0)
      .add("skipped_steps", p.skipped_steps)
      .add("pde", std::string(run.visit->problem->name()))
      .add("parameters", run.visit->plan.parameters)
      .add("checkpoint", checkpoint)
      .add("pdegen_version", fmt::format("{} ({})", build::version, build::git_hash));
  if (multigrid) summary.add("multigrid", levels);
  if (run.visit->data) {
    summary.add("val_loss", p.val_loss);
    run.visit->data->report(summary, run.visit->trainer->next_sample(p.completed), p.train_time);
  }
  const fs::path file = fs::path(deck.output.dir) / "summary.json";
  write_text_file_atomically(file.string(), summary.dump() + "\n");
  spdlog::info(
      "{}: {} steps in {}, final loss {:.6e}, rel_l2 mean {:.3f}% max {:.3f}% over {} held-out samples; "
      "summary: {}",
      p.status, p.completed, format_duration(wall), p.loss, 100 * p.eval.mean, 100 * p.eval.max,
      p.eval.samples, file.string());
}

// The newest checkpoint of the run, for messages: every one of them was read back intact.
std::string last_good_checkpoint(const Run& run) {
  const std::string last = latest_checkpoint(run.ckpt_dir.string());
  return last.empty() ? "none" : last;
}

// The run ends as diverged because of `what`, seen after `step`; the message names the last good
// checkpoint.
void declare_diverged(Run& run, Progress& p, const std::string& what, int64_t step) {
  p.message = fmt::format(
      "{} at step {}: training diverged (lower optimizer.lr, or enable optimizer.grad_clip); the last good "
      "checkpoint is {}",
      what, step, last_good_checkpoint(run));
  spdlog::error("{}", p.message);
  p.status = "diverged";
  p.exit_code = exit_diverged;
}

// The name of the first tensor of `data` holding a NaN or an infinity, "" when there is none.
std::string non_finite_tensor(CheckpointData& data) {
  const auto bad = [](Tensor& t) {
    if (!t.defined() || t.dtype() != DType::f32) return false;
    Tensor plain = to_plain(t);
    return has_non_finite(plain);
  };
  if (bad(data.parameters)) return "the parameters";
  for (auto& [name, t] : data.optimizer_state)
    if (bad(t)) return fmt::format("the optimizer state '{}'", name);
  for (auto& [name, t] : data.buffers)
    if (bad(t)) return fmt::format("the buffer '{}'", name);
  return {};
}

// Checkpoints hold the full, unsharded state (rank 0 writes it), so any rank count reads them, and
// the place in the multigrid cycle (the visit, the run's step it began at, whether its stop_error
// ended it). The
// older ones are pruned only once the new one has been read back intact. A state that is not finite
// is never written (every rank sees the same full state and stops): the run ends as diverged.
std::string save_checkpoint(Run& run, Progress& p) {
  const Visit& visit = *run.visit;
  CheckpointData data = visit.trainer->snapshot(p.completed, p.loss, run.deck_yaml);  // collective
  data.scalars.emplace_back("visit", static_cast<double>(visit.index));
  data.scalars.emplace_back("visit_first_step", static_cast<double>(visit.trainer->first_step()));
  data.scalars.emplace_back("visit_stopped", visit.ended_by == "stop_error" ? 1.0 : 0.0);
  if (const std::string bad = non_finite_tensor(data); !bad.empty()) {
    declare_diverged(run, p, bad + " is not finite", p.completed);
    return {};
  }
  if (run.comm.rank() != 0) return {};
  const std::string path = (run.ckpt_dir / checkpoint_file_name(p.completed)).string();
  try {
    write_checkpoint(path, data);
  } catch (const IoError& e) {
    throw IoError(
        fmt::format("the checkpoint of step {} could not be written: {}. The last good checkpoint is "
                    "{}; free space and restart with training.restart=latest",
                    p.completed, e.what(), last_good_checkpoint(run)));
  }
  prune_checkpoints(run.ckpt_dir.string(), run.deck.output.checkpoint_keep);
  return path;
}

// Rank 0, after an I/O failure: summary.json says so, if the disk still takes it.
void record_failure(const Run& run, const Progress& p, const std::string& message) {
  if (run.comm.rank() != 0) return;
  JsonObject summary;
  summary.add("status", "failed")
      .add("message", message)
      .add("steps", p.completed)
      .add("checkpoint", latest_checkpoint(run.ckpt_dir.string()));
  try {
    write_text_file_atomically((run.dir / "summary.json").string(), summary.dump() + "\n");
  } catch (const IoError& e) {
    spdlog::error("{}", e.what());
  }
}

// After a step that did not update: a skipped step is logged and counted; false ends the run.
bool accept_outcome(Run& run, Progress& p, const StepOutcome& o, int64_t s) {
  if (o.status == StepOutcome::Status::skipped) {
    ++p.skipped_steps;
    spdlog::warn("step {}: the gradient overflowed at loss scale {:g}: step skipped, scale now {:g}", s + 1,
                 o.loss_scale, run.visit->trainer->scaler()->scale());
  }
  if (o.status != StepOutcome::Status::diverged) return true;
  const std::string what = !o.cause.empty() ? o.cause
                           : std::isfinite(o.loss)
                               ? fmt::format("the gradient is not finite (loss {})", o.loss)
                               : fmt::format("the loss is {}", o.loss);
  declare_diverged(run, p, what, s + 1);
  return false;
}

// Every parallel.consistency_every steps: parameters and optimizer state identical on every rank.
void check_replicas(Run& run, int64_t completed) {
  const int every = run.deck.parallel.consistency_every;
  if (every <= 0 || completed % every != 0) return;
  Optimizer& optimizer = run.visit->trainer->optimizer();
  std::vector<const Tensor*> state{&run.visit->net->model->master().flat_values()};
  optimizer.gather_state();  // sharded state: the full vectors, identical on every rank
  for (auto& [name, tensor] : optimizer.state()) state.push_back(tensor);
  check_replicas_identical(state_checksum(state), run.comm, completed);
}

// Adds a completed step to the progress counters.
void count_step(Run& run, Progress& p, const StepOutcome& o, double seconds) {
  const Visit& visit = *run.visit;
  const double samples = static_cast<double>(visit.deck.training.batch_size * o.evaluations);
  const double flops = visit.plan.flops_per_step * o.evaluations;
  p.window_time += seconds;
  p.train_time += seconds;
  p.window_evals += o.evaluations;
  p.total_evals += o.evaluations;
  p.window_samples += samples;
  p.total_samples += samples;
  p.window_flops += flops;
  p.total_flops += flops;
  p.step_flops += visit.plan.flops_per_step;
  run.visit->train_seconds += seconds;
}

// After the evaluation of step `completed`: the visit is over when it reached its stop_error.
void check_stop_error(Run& run, const Progress& p) {
  if (!run.deck.multigrid.enabled()) return;
  const double stop = run.deck.multigrid.level[static_cast<size_t>(run.visit->level)].stop_error;
  run.visit->eval = p.eval;
  if (stop <= 0 || !(p.eval.mean <= stop)) return;
  run.visit->finished = true;
  run.visit->ended_by = "stop_error";
  spdlog::info("step {}: level {} reached its stop_error ({:.3f}% <= {:.3f}%): the visit ends", p.completed,
               run.visit->level, 100 * p.eval.mean, 100 * stop);
}

// Stops on a signal, which every rank must agree on or the next collective would hang. True when
// the run stops.
bool stop_on_signal(Progress& p, const Communicator& comm, bool last_step) {
  const int sig = static_cast<int>(comm.max(static_cast<double>(stop_requested())));
  if (sig == 0 || last_step) return false;
  p.status = "interrupted";
  p.exit_code = 128 + sig;
  p.message = fmt::format("stopped by signal {} after step {}", sig, p.completed);
  spdlog::warn("{}; writing a final checkpoint", p.message);
  return true;
}

// The steps of the visit running, from p.completed on, until its end, its stop_error or a stop.
// False when the run stops.
bool run_visit_steps(Run& run, Progress& p) {
  const Deck& deck = run.deck;
  Visit& visit = *run.visit;
  const int64_t end = visit.trainer->first_step() + visit.deck.training.steps;
  const bool last_visit = visit.index + 1 == static_cast<int>(run.visits.size());
  for (int64_t s = p.completed; s < end && !visit.finished; ++s) {
    Timer step_timer;
    run.timeline.set_active(deck.timeline.enabled && s + 1 >= deck.timeline.first_step &&
                            s + 1 < deck.timeline.first_step + deck.timeline.steps);
    watchdog::set_phase(fmt::format("step {}", s + 1));
    const StepOutcome o = visit.trainer->step(s);
    p.loss = o.loss;
    p.grad_norm = o.grad_norm;
    if (!accept_outcome(run, p, o, s)) return false;
    check_replicas(run, s + 1);
    p.completed = s + 1;
    count_step(run, p, o, step_timer.seconds());
    if (p.completed == end) visit.finished = true, visit.ended_by = "steps";

    const bool do_eval =
        visit.finished || (deck.evaluation.every > 0 && p.completed % deck.evaluation.every == 0);
    if (do_eval) {
      watchdog::set_phase(fmt::format("the evaluation after step {}", p.completed));
      evaluate_into(run, p);
      check_stop_error(run, p);
    }
    const bool last_step = visit.finished && last_visit;
    if (do_eval || p.completed % deck.training.log_every == 0) log_step(run, p, o, do_eval);
    if (!last_step && deck.training.checkpoint_every > 0 &&
        p.completed % deck.training.checkpoint_every == 0) {
      watchdog::set_phase(fmt::format("the checkpoint of step {}", p.completed));
      save_checkpoint(run, p);
      if (p.status == "diverged") return false;
    }
    if (stop_on_signal(p, run.comm, last_step)) return false;
  }
  visit.finished = true;
  return true;
}

// What a visit did, for summary.json.
void report_visit(Run& run, const Progress& p) {
  const Visit& v = *run.visit;
  JsonObject j;
  j.add("visit", v.index)
      .add("level", v.level)
      .add("resolution", v.deck.problem.resolution)
      .add("first_step", v.trainer->first_step())
      .add("steps", p.completed - v.trainer->first_step())
      .add("train_seconds", v.train_seconds)
      .add("ended_by", v.ended_by.empty() ? p.status : v.ended_by)
      .add("rel_l2_mean", v.eval.mean)
      .add("rel_l2_max", v.eval.max);
  run.visit_reports.push_back(j);
}

// The network of `plan` with its parameters initialised from the seed, and its gradient reducer.
std::shared_ptr<Net> build_net(const Run& run, const NetworkPlan& plan, int depth) {
  const Deck& deck = run.deck;
  auto n = std::make_shared<Net>();
  n->depth = depth;
  n->model = build_model(plan, deck.training.seed, deck.device);
  spdlog::info(
      "network: {}, {} parameters, {:.2f} GFLOP per training step (global batch {}), this rank holds {} "
      "samples",
      plan.description, plan.parameters, plan.flops_per_step / 1e9, plan.global_batch,
      share_of(plan.global_batch, run.comm.rank(), run.comm.size()).count());
  // On a GPU the NCCL reducer sums the device gradients while backward goes on.
  if (deck.timeline.enabled) n->model->net->set_timeline(&run.timeline);
  n->reducer = make_reducer(n->model->registry, run.comm, deck.parallel,
                            deck.timeline.enabled ? &run.timeline : nullptr);
  // Synchronized batch norm's sums go through the reducer: on a GPU they then run through NCCL on
  // the reducer's stream, after the buckets already queued, never beside them.
  if (run.sync_bn)
    n->model->net->set_stats_allreduce(
        [&r = *n->reducer](double* data, int count) { r.allreduce_statistics(data, count); });
  spdlog::info("{}{}", n->reducer->describe(), run.sync_bn ? "; synchronized batch norm" : "");
  return n;
}

// The layer a parameter or buffer belongs to ("enc1.conv0.weight" -> "enc1.conv0").
std::string layer_of(const std::string& name) { return name.substr(0, name.rfind('.')); }

// A deepened network takes the layers of the shallower one that it holds as its inner levels (the
// same shapes under the shifted names), parameters and batch-norm statistics; a layer that changed
// shape in any of its tensors (the former first conv, the head) stays fresh as a whole.
void inherit(Net& deeper, Net& shallower, int64_t step) {
  const int extra = deeper.depth - shallower.depth;
  std::map<std::string, const Parameter*> source;  // by the name in the deeper network
  for (const Parameter& q : shallower.model->master().params())
    source[unet_name_when_deepened(q.name, extra)] = &q;
  std::map<std::string, bool> fits;  // by layer: every tensor has a source of its shape
  for (const Parameter& p : deeper.model->master().params()) {
    const auto it = source.find(p.name);
    const bool ok = it != source.end() && it->second->shape == p.shape;
    fits.try_emplace(layer_of(p.name), true).first->second &= ok;
  }
  int64_t inherited = 0;
  for (const Parameter& p : deeper.model->master().params())
    if (fits[layer_of(p.name)]) {
      Tensor(p.value).copy_from(source.at(p.name)->value);
      inherited += p.shape.numel();
    }
  deeper.model->push_values();
  auto buffers = deeper.model->net->buffers();
  for (auto& [name, t] : shallower.model->net->buffers())
    for (auto& [deep_name, deep_t] : buffers)
      if (deep_name == unet_name_when_deepened(name, extra) && fits[layer_of(deep_name)])
        Tensor(deep_t).copy_from(t);
  spdlog::info(
      "step {}: the U-Net deepens from {} to {} levels: {} of its {} parameters inherited, the rest fresh",
      step + 1, shallower.depth, deeper.depth, inherited, deeper.model->master().count());
}

// Visit `index` of the cycle, from the run's step `first_step` and global sample `first_sample` on,
// training `previous` (the network of the visit before, if any) or, when that is not of the
// visit's depth, a deeper network that inherits from it.
std::unique_ptr<Visit> make_visit(Run& run, int index, int64_t first_step, int64_t first_sample,
                                  std::shared_ptr<Net> previous) {
  auto v = std::make_unique<Visit>();
  v->index = index;
  v->level = run.visits[static_cast<size_t>(index)];
  v->deck = level_deck(run.deck, v->level);
  v->plan = plan_network(v->deck);
  v->net = std::move(previous);
  if (!v->net || v->net->depth != v->deck.network.depth) {
    std::shared_ptr<Net> grown = build_net(run, v->plan, v->deck.network.depth);
    if (v->net) inherit(*grown, *v->net, first_step);
    v->net = std::move(grown);
  }
  v->problem = make_problem(v->deck.problem, v->deck.evaluation);
  if (run.dataset) {
    auto data = std::make_unique<DataObjective>(*v->problem, v->deck, *run.dataset);
    v->data = data.get();
    v->objective = std::move(data);
  } else {
    v->objective = std::make_unique<PhysicsObjective>(*v->problem);
  }
  v->trainer = std::make_unique<Trainer>(v->deck, *v->net->model, *v->objective, *v->net->reducer, run.comm,
                                         &run.timeline, first_step, first_sample);
  return v;
}

// "level 1 (128x128): 500 steps, batch 16, lr 1e-03"
std::string describe_visit(const Visit& v) {
  return fmt::format("level {} ({}): {} steps, batch {}, lr {:.0e}", v.level, grid_text(v.deck.problem),
                     v.deck.training.steps, v.deck.training.batch_size, v.deck.optimizer.lr);
}

// Ends the visit running and starts the next, which takes over the loss scale and, with
// multigrid.optimizer_state carry, the optimizer and its state.
void next_visit(Run& run, const Progress& p) {
  std::unique_ptr<Visit> next = make_visit(run, run.visit->index + 1, p.completed,
                                           run.visit->trainer->next_sample(p.completed), run.visit->net);
  const bool carry = run.deck.multigrid.optimizer_state == OptimizerCarry::carry;
  const bool carried = next->trainer->continue_from(*run.visit->trainer, carry);
  spdlog::info("step {}: visit {} of {}, {}; optimizer {}", p.completed + 1, next->index + 1,
               run.visits.size(), describe_visit(*next),
               carried ? "state carried over"
               : carry ? "fresh (another type or network than the visit before)"
                       : "fresh");
  run.visit = std::move(next);
}

// The visits from the one running to the end of the cycle, or to a stop.
void run_visits(Run& run, Progress& p) {
  while (true) {
    const bool go_on = run_visit_steps(run, p);
    report_visit(run, p);
    if (!go_on || run.visit->index + 1 == static_cast<int>(run.visits.size())) return;
    next_visit(run, p);
  }
}

// The checkpoint to restart from, read and checked against this deck; nothing for a fresh start.
std::optional<CheckpointData> read_restart(const Run& run, const std::string& file) {
  if (file.empty()) return std::nullopt;
  CheckpointData data = read_checkpoint(file);
  check_restart_deck(data.deck_yaml, run.deck_yaml, file, run.deck.training.allow_deck_changes);
  if (run.comm.rank() == 0 && fs::equivalent(fs::absolute(file).parent_path(), run.ckpt_dir))
    set_aside_later_trajectory(run.dir, data.step);
  if (data.seed != run.deck.training.seed)
    spdlog::warn("{} was written with training.seed {}, this run uses {}: the sample sequence changes", file,
                 data.seed, run.deck.training.seed);
  return data;
}

// The visit the run starts in: the first, or the checkpoint's with its state restored.
void start_visit(Run& run, Progress& p, const std::optional<CheckpointData>& data, const std::string& file) {
  const int index = data ? static_cast<int>(data->scalar("visit", 0)) : 0;
  if (index >= static_cast<int>(run.visits.size()))
    throw UserError(
        fmt::format("{} was written in visit {} of a multigrid cycle; this deck's cycle has {} visits", file,
                    index + 1, run.visits.size()));
  const int64_t first_step = data ? static_cast<int64_t>(data->scalar("visit_first_step", 0)) : 0;
  run.visit = make_visit(run, index, first_step, 0, nullptr);
  Visit& v = *run.visit;
  if (data) {
    p.loss = data->scalar("loss", NAN);
    p.start = v.trainer->restore(*data, file);
    if (data->scalar("visit_stopped", 0) != 0) v.finished = true, v.ended_by = "stop_error";
    spdlog::info("restarted from {} at step {}", file, p.start);
  }
  const int64_t end = first_step + v.deck.training.steps;
  if (p.start > end && !run.deck.multigrid.enabled())
    throw UserError(fmt::format("the checkpoint is at step {}, beyond training.steps = {}", p.start, end));
  if (p.start > end)
    throw UserError(
        fmt::format("the checkpoint is at step {}, beyond the end of its visit of level {} (step {})",
                    p.start, v.level, end));
  if (run.deck.multigrid.enabled())
    spdlog::info("visit {} of {}, {}", v.index + 1, run.visits.size(), describe_visit(v));
  p.completed = p.start;
}

// fields.h5: the first evaluation samples with the final network's prediction.
void write_fields(Run& run, const Progress& p) {
  const EvaluationSet& e = evaluation_set(run, evaluation_resolution(run.deck, run.visit->deck));
  const std::string file = (run.dir / "fields.h5").string();
  const int64_t count = std::min<int64_t>(run.deck.output.field_samples, e.set.total);
  const Tensor input = first_rows(e.set, e.set.input, count);
  const Tensor pred = input.dim(0) > 0
                          ? predict(*run.visit->net->model, *e.problem, input,
                                    precision_after(run.deck, p.completed), run.deck.training.batch_size)
                          : Tensor::empty(e.problem->batch_shape(0));
  const std::string xdmf = write_set_fields(file, *e.problem, e.set, count, &pred, run.deck_yaml, run.comm);
  spdlog::info("fields: {} ({} samples; open {} in ParaView or VisIt)", file, count, xdmf);
}

// After the loop: the final checkpoint and fields (unless diverged), the last evaluation, the
// timeline and summary.json.
int finish(Run& run, Progress& p) {
  watchdog::set_phase(fmt::format("the end of the run after step {}", p.completed));
  std::string final_checkpoint;
  if (p.status != "diverged") final_checkpoint = save_checkpoint(run, p);
  if (p.status != "diverged") {  // a state that is not finite diverges in save_checkpoint
    if (run.comm.rank() == 0) spdlog::info("checkpoint: {}", final_checkpoint);
    if (p.status == "completed" && run.deck.output.fields) write_fields(run, p);
  }
  if (std::isnan(p.eval.mean) && p.status != "diverged") evaluate_into(run, p);
  run.timeline.set_active(false);
  if (run.deck.timeline.enabled) write_timeline(run.timeline, run.dir / "timeline.json", run.comm);
  write_summary(run, p, final_checkpoint);
  return p.exit_code;
}

// bf16 on images wider than oneDNN 2.6.3's AMX kernels take runs in fp32, slower than fp32 alone.
void warn_slow_bf16(const Deck& deck) {
  if (deck.device == Device::cpu && deck.precision == DType::bf16 &&
      deck.problem.resolution > cpu::widest_bf16_image)
    spdlog::warn(
        "precision bf16 at resolution {}: convolutions on images wider than {} run in fp32 "
        "(oneDNN 2.6.3's AMX kernels fail on them), and the conversions make bf16 slower than fp32 "
        "at this size (docs/performance.md, \"bf16 on the CPU\"); precision: fp32 is faster here",
        deck.problem.resolution, cpu::widest_bf16_image);
}

// The activation type, and the loss scaling when there is any.
void log_precision(const Deck& deck, const LossScaler* scaler) {
  if (deck.precision == DType::f32 && !scaler) return;
  spdlog::info("precision: {} activations, fp32 parameters, gradients and loss{}{}",
               dtype_name(deck.precision),
               deck.precision != DType::f32 && deck.training.fp32_after_step > 0
                   ? fmt::format("; fp32 after step {}", deck.training.fp32_after_step)
                   : std::string(),
               scaler ? fmt::format("; dynamic loss scaling from {:g}, growth after {} clean steps",
                                    scaler->scale(), deck.loss_scaling.growth_interval)
                      : std::string());
}

// Rank 0 takes the run directory (app/run_directory.hpp); every rank learns the checkpoint to
// restart from ("" for none), or the reason the directory is refused.
std::string take_run_directory(const Deck& deck, const std::string& deck_yaml, const Communicator& comm,
                               RunLock& lock) {
  const fs::path dir = deck.output.dir;
  std::string restart, refusal;
  if (comm.rank() == 0) {
    try {
      lock = RunLock(dir);
      restart = restart_file(deck, dir / "checkpoints");
      claim_run_directory(deck, deck_yaml, restart, lock);
      fs::create_directories(dir / "checkpoints");
    } catch (const UserError& e) {
      refusal = e.what();
    }
  }
  comm.broadcast(refusal);
  if (!refusal.empty()) throw UserError(refusal);
  comm.broadcast(restart);
  return restart;
}

}  // namespace

int train(const Deck& deck, const std::string& deck_yaml, const Communicator& comm) {
  const Timer wall;
  check_precision_runs_here(deck.precision, deck.device);  // before the run directory is touched
  const fs::path dir = deck.output.dir;
  std::optional<data::DatasetIndex> dataset;  // read before the run directory is touched
  if (deck.training.objective != ObjectiveKind::physics)
    dataset = load_dataset_index(deck.data, *make_problem(deck.problem, deck.evaluation), comm);
  RunLock lock;  // held until train returns (or the process ends)
  const std::string restart_from = take_run_directory(deck, deck_yaml, comm, lock);
  add_log_file((dir / "pdegen.log").string());
  spdlog::info("pdegen {} ({}) training on {} rank(s), device {}; effective configuration:\n{}",
               build::version, build::git_hash, comm.size(), device_name(deck.device), deck_yaml);
  set_up_device(deck, comm);
  use_conv_algorithm(deck.cpu.conv_algorithm);
  warn_slow_bf16(deck);
  bool sync_bn = false;
  for (int level = 0; level < deck.multigrid.levels; ++level)
    sync_bn = use_sync_batchnorm(level_deck(deck, level), comm);

  // Timeline: one clock origin for all ranks.
  Timeline timeline;
  comm.barrier();
  timeline.start_clock();
  Run run(deck, deck_yaml, comm, timeline);
  run.sync_bn = sync_bn;
  if (dataset) run.dataset = &*dataset;
  run.visits = visits_of(deck);
  for (int level = 0; level < deck.multigrid.levels; ++level)
    run.level_flops.push_back(plan_network(level_deck(deck, level)).flops_per_step);
  run.total_steps = total_steps(deck);
  run.dir = dir;
  run.ckpt_dir = dir / "checkpoints";
  run.wall = wall;
  Progress p;
  start_visit(run, p, read_restart(run, restart_from), restart_from);
  log_precision(deck, run.visit->trainer->scaler());
  // Only a run that will train owns the directory's deck: a rejected restart leaves it as it was.
  if (comm.rank() == 0) write_text_file_atomically((dir / "deck.resolved.yaml").string(), deck_yaml);
  evaluation_set(run, evaluation_resolution(deck, run.visit->deck));
  std::unique_ptr<HistoryWriter> history;
  if (comm.rank() == 0)
    history = std::make_unique<HistoryWriter>(
        (dir / "history.csv").string(),
        std::vector<std::string>{"step", "wall_s", "loss", "lr", "grad_norm", "rel_l2_mean", "rel_l2_max",
                                 "samples_per_s", "gflops", "level", "resolution", "val_loss"},
        p.start);
  run.history = history.get();
  install_stop_handlers();
  CachingAllocator::host().reset_peak();
  cuda::reset_memory_peak();
  try {
    run_visits(run, p);
    return finish(run, p);
  } catch (const IoError& e) {
    record_failure(run, p, e.what());
    throw;
  }
}

int run_train(const CliOptions& options) {
  const ValidatedDeck v = validate_deck(options);
  return train(v.deck, to_yaml(v.deck), Communicator());
}

}  // namespace pdegen::app

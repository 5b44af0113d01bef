// pdegen train: the run around the Trainer (app/trainer.hpp) on every rank: the run directory,
// device and reducer set-up, restart, periodic evaluation against the reference solver, the
// progress line, history.csv, summary.json, checkpoints with exact restart, the fields file at the
// end, and clean stops on SIGINT/SIGTERM or divergence.
#include "app/train.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <pdegen/build_info.hpp>

#include "app/evaluation.hpp"
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
  double loss = NAN, grad_norm = NAN;  // of the last step
  ErrorSummary eval{NAN, NAN, 0, {}};
  std::string status = "completed", message;
  int exit_code = 0;
};

// The progress line and the history.csv row of the step just completed.
void log_step(const Deck& deck, const NetworkPlan& plan, Progress& p, const StepOutcome& o, bool evaluated,
              const LossScaler* scaler, HistoryWriter* history, double wall) {
  const int64_t B = deck.training.batch_size, steps = deck.training.steps;
  const double sps = static_cast<double>(B * p.window_evals) / p.window_time;
  const double gflops = plan.flops_per_step * static_cast<double>(p.window_evals) / p.window_time / 1e9;
  const double eta =
      p.train_time / static_cast<double>(p.completed - p.start) * static_cast<double>(steps - p.completed);
  const int width = static_cast<int>(std::to_string(steps).size());
  std::string line =
      fmt::format("step {:>{}}/{} | loss {:.4e} | lr {:.1e}", p.completed, width, steps, p.loss, o.lr);
  if (evaluated) line += fmt::format(" | rel_l2 {:.3f}% (max {:.3f}%)", 100 * p.eval.mean, 100 * p.eval.max);
  if (scaler) line += fmt::format(" | scale {:g}", scaler->scale());
  line += fmt::format(" | {:.0f} samples/s | {:.1f} GFLOP/s | ETA {}", sps, gflops, format_duration(eta));
  spdlog::info("{}", line);
  if (history)
    history->row({std::to_string(p.completed), fmt::format("{:.3f}", wall), fmt::format("{:.9e}", p.loss),
                  fmt::format("{:.6e}", o.lr), fmt::format("{:.6e}", p.grad_norm),
                  evaluated ? fmt::format("{:.6e}", p.eval.mean) : "",
                  evaluated ? fmt::format("{:.6e}", p.eval.max) : "", fmt::format("{:.2f}", sps),
                  fmt::format("{:.2f}", gflops)});
  p.window_time = 0;
  p.window_evals = 0;
}

// summary.json (rank 0) and the closing log line.
void write_summary(const Deck& deck, const NetworkPlan& plan, const Problem& problem, const Progress& p,
                   const GradientReducer& reducer, const LossScaler* scaler, const std::string& checkpoint,
                   const Communicator& comm, double wall) {
  // Reduction figures, averaged over ranks.
  const ReducerStats& rs = reducer.stats();
  const double comm_seconds = comm.sum(rs.comm_seconds) / comm.size();
  const double exposed_seconds = comm.sum(rs.exposed_seconds) / comm.size();
  const double exposed_fraction = comm_seconds > 0 ? std::min(1.0, exposed_seconds / comm_seconds) : 0.0;
  if (comm.size() > 1)
    spdlog::info(
        "gradient reduction: {:.3f} s in {} reductions, {:.1f}% of it exposed (not hidden by backward)",
        comm_seconds, rs.steps, 100 * exposed_fraction);
  if (comm.rank() != 0) return;
  const double steps_run = static_cast<double>(p.completed - p.start),
               evals = static_cast<double>(p.total_evals);
  const auto mem = CachingAllocator::host().stats();
  JsonObject eval_json, throughput, memory, summary;
  eval_json.add("rel_l2_mean", p.eval.mean).add("rel_l2_max", p.eval.max).add("samples", p.eval.samples);
  throughput
      .add("samples_per_s",
           p.train_time > 0 ? static_cast<double>(deck.training.batch_size) * evals / p.train_time : 0.0)
      .add("gflops", p.train_time > 0 ? plan.flops_per_step * evals / p.train_time / 1e9 : 0.0)
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
      .add("pde", std::string(problem.name()))
      .add("parameters", plan.parameters)
      .add("checkpoint", checkpoint)
      .add("pdegen_version", fmt::format("{} ({})", build::version, build::git_hash));
  const fs::path file = fs::path(deck.output.dir) / "summary.json";
  write_text_file_atomically(file.string(), summary.dump() + "\n");
  spdlog::info(
      "{}: {} steps in {}, final loss {:.6e}, rel_l2 mean {:.3f}% max {:.3f}% over {} held-out samples; "
      "summary: {}",
      p.status, p.completed, format_duration(wall), p.loss, 100 * p.eval.mean, 100 * p.eval.max,
      p.eval.samples, file.string());
}

// Everything the step loop works with, set up once.
struct Run {
  const Deck& deck;
  const NetworkPlan& plan;
  const Problem& problem;
  const std::string& deck_yaml;
  const Communicator& comm;
  Model& model;
  Trainer& trainer;
  Timeline& timeline;
  SampleSet eval_set;  // filled after the restart is known to be good
  HistoryWriter* history;
  fs::path dir, ckpt_dir;
  Timer wall;
};

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

// Checkpoints hold the full, unsharded state (rank 0 writes it), so any rank count reads them. The
// older ones are pruned only once the new one has been read back intact. A state that is not finite
// is never written (every rank sees the same full state and stops): the run ends as diverged.
std::string save_checkpoint(Run& run, Progress& p) {
  CheckpointData data = run.trainer.snapshot(p.completed, p.loss, run.deck_yaml);  // collective
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

// The activation type the network runs in after `completed` steps: that of the last step.
DType precision_after(const Deck& deck, int64_t completed) {
  return precision_at(deck, std::max<int64_t>(completed - 1, 0));
}

ErrorSummary evaluate(Run& run, int64_t completed) {
  const Tensor prediction = run.eval_set.indices.empty()
                                ? Tensor()
                                : predict(run.model, run.problem, run.eval_set.input,
                                          precision_after(run.deck, completed), run.deck.training.batch_size);
  return summarize_error(run.problem, run.eval_set, prediction, run.comm);
}

// After a step that did not update: a skipped step is logged and counted; false ends the run.
bool accept_outcome(Run& run, Progress& p, const StepOutcome& o, int64_t s) {
  if (o.status == StepOutcome::Status::skipped) {
    ++p.skipped_steps;
    spdlog::warn("step {}: the gradient overflowed at loss scale {:g}: step skipped, scale now {:g}", s + 1,
                 o.loss_scale, run.trainer.scaler()->scale());
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
  Optimizer& optimizer = run.trainer.optimizer();
  std::vector<const Tensor*> state{&run.model.master().flat_values()};
  optimizer.gather_state();  // sharded state: the full vectors, identical on every rank
  for (auto& [name, tensor] : optimizer.state()) state.push_back(tensor);
  check_replicas_identical(state_checksum(state), run.comm, completed);
}

// The steps from p.start to training.steps, or to a stop.
void run_steps(Run& run, Progress& p) {
  const Deck& deck = run.deck;
  const int64_t steps = deck.training.steps;
  for (int64_t s = p.start; s < steps; ++s) {
    Timer step_timer;
    run.timeline.set_active(deck.timeline.enabled && s + 1 >= deck.timeline.first_step &&
                            s + 1 < deck.timeline.first_step + deck.timeline.steps);
    watchdog::set_phase(fmt::format("step {}", s + 1));
    const StepOutcome o = run.trainer.step(s);
    p.loss = o.loss;
    p.grad_norm = o.grad_norm;
    if (!accept_outcome(run, p, o, s)) break;
    check_replicas(run, s + 1);
    p.completed = s + 1;
    const double dt = step_timer.seconds();
    p.window_time += dt;
    p.train_time += dt;
    p.window_evals += o.evaluations;
    p.total_evals += o.evaluations;

    const bool last_step = p.completed == steps;
    const bool do_eval = last_step || (deck.evaluation.every > 0 && p.completed % deck.evaluation.every == 0);
    if (do_eval) {
      watchdog::set_phase(fmt::format("the evaluation after step {}", p.completed));
      p.eval = evaluate(run, p.completed);
    }
    if (do_eval || p.completed % deck.training.log_every == 0)
      log_step(deck, run.plan, p, o, do_eval, run.trainer.scaler(), run.history, run.wall.seconds());
    if (!last_step && deck.training.checkpoint_every > 0 &&
        p.completed % deck.training.checkpoint_every == 0) {
      watchdog::set_phase(fmt::format("the checkpoint of step {}", p.completed));
      save_checkpoint(run, p);
      if (p.status == "diverged") break;
    }
    // Every rank must agree to stop, or the next collective would hang.
    const int sig = static_cast<int>(run.comm.max(static_cast<double>(stop_requested())));
    if (sig != 0 && !last_step) {
      p.status = "interrupted";
      p.exit_code = 128 + sig;
      p.message = fmt::format("stopped by signal {} after step {}", sig, p.completed);
      spdlog::warn("{}; writing a final checkpoint", p.message);
      break;
    }
  }
}

// The restart state, if any: the checkpoint's step and the loss of its last step.
void restart(Run& run, Progress& p, const std::string& file) {
  if (!file.empty()) {
    const CheckpointData data = read_checkpoint(file);
    check_restart_deck(data.deck_yaml, run.deck_yaml, file, run.deck.training.allow_deck_changes);
    if (run.comm.rank() == 0 && fs::equivalent(fs::absolute(file).parent_path(), run.ckpt_dir))
      set_aside_later_trajectory(run.dir, data.step);
    p.loss = data.scalar("loss", NAN);
    p.start = run.trainer.restore(data, file);
    if (data.seed != run.deck.training.seed)
      spdlog::warn("{} was written with training.seed {}, this run uses {}: the sample sequence changes",
                   file, data.seed, run.deck.training.seed);
    spdlog::info("restarted from {} at step {}", file, p.start);
  }
  if (p.start > run.deck.training.steps)
    throw UserError(fmt::format("the checkpoint is at step {}, beyond training.steps = {}", p.start,
                                run.deck.training.steps));
  p.completed = p.start;
}

// After the loop: the final checkpoint and fields (unless diverged), the last evaluation, the
// timeline and summary.json.
int finish(Run& run, Progress& p, const GradientReducer& reducer) {
  watchdog::set_phase(fmt::format("the end of the run after step {}", p.completed));
  std::string final_checkpoint;
  if (p.status != "diverged") final_checkpoint = save_checkpoint(run, p);
  if (p.status != "diverged") {  // a state that is not finite diverges in save_checkpoint
    if (run.comm.rank() == 0) spdlog::info("checkpoint: {}", final_checkpoint);
    if (p.status == "completed" && run.deck.output.fields) {
      const std::string file = (run.dir / "fields.h5").string();
      const int64_t count = std::min<int64_t>(run.deck.output.field_samples, run.eval_set.total);
      const Tensor input = first_rows(run.eval_set, run.eval_set.input, count);
      const Tensor pred = input.dim(0) > 0
                              ? predict(run.model, run.problem, input, precision_after(run.deck, p.completed),
                                        run.deck.training.batch_size)
                              : Tensor::empty(run.problem.batch_shape(0));
      const std::string xdmf =
          write_set_fields(file, run.problem, run.eval_set, count, &pred, run.deck_yaml, run.comm);
      spdlog::info("fields: {} ({} samples; open {} in ParaView or VisIt)", file, count, xdmf);
    }
  }
  if (std::isnan(p.eval.mean) && p.status != "diverged") p.eval = evaluate(run, p.completed);
  run.timeline.set_active(false);
  if (run.deck.timeline.enabled) write_timeline(run.timeline, run.dir / "timeline.json", run.comm);
  write_summary(run.deck, run.plan, run.problem, p, reducer, run.trainer.scaler(), final_checkpoint, run.comm,
                run.wall.seconds());
  return p.exit_code;
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

int train(const Deck& deck, const NetworkPlan& plan, const std::string& deck_yaml, const Communicator& comm) {
  const Timer wall;
  check_precision_runs_here(deck.precision, deck.device);  // before the run directory is touched
  const auto problem = make_problem(deck.problem, deck.evaluation);
  const fs::path dir = deck.output.dir;
  RunLock lock;  // held until train returns (or the process ends)
  const std::string restart_from = take_run_directory(deck, deck_yaml, comm, lock);
  add_log_file((dir / "pdegen.log").string());
  spdlog::info("pdegen {} ({}) training on {} rank(s), device {}; effective configuration:\n{}",
               build::version, build::git_hash, comm.size(), device_name(deck.device), deck_yaml);
  set_up_device(deck, comm);
  use_conv_algorithm(deck.cpu.conv_algorithm);
  if (deck.device == Device::cpu && deck.precision == DType::bf16 &&
      deck.problem.resolution > cpu::widest_bf16_image)
    spdlog::warn(
        "precision bf16 at resolution {}: convolutions on images wider than {} run in fp32 "
        "(oneDNN 2.6.3's AMX kernels fail on them), and the conversions make bf16 slower than fp32 "
        "at this size (docs/performance.md, \"bf16 on the CPU\"); precision: fp32 is faster here",
        deck.problem.resolution, cpu::widest_bf16_image);
  auto model = build_model(plan, deck.training.seed, deck.device);
  spdlog::info(
      "network: {} parameters, {:.2f} GFLOP per training step (global batch {}), this rank holds {} samples",
      plan.parameters, plan.flops_per_step / 1e9, deck.training.batch_size,
      share_of(deck.training.batch_size, comm.rank(), comm.size()).count());
  const bool sync_bn = use_sync_batchnorm(deck, comm);

  // Timeline (one clock origin for all ranks) and the gradient reducer, on the run's device: on a
  // GPU the NCCL reducer sums the device gradients while backward goes on.
  Timeline timeline;
  comm.barrier();
  timeline.start_clock();
  if (deck.timeline.enabled) model->net->set_timeline(&timeline);
  const std::unique_ptr<GradientReducer> reducer =
      make_reducer(model->registry, comm, deck.parallel, deck.timeline.enabled ? &timeline : nullptr);
  // Synchronized batch norm's sums go through the reducer: on a GPU they then run through NCCL on
  // the reducer's stream, after the buckets already queued, never beside them.
  if (sync_bn)
    model->net->set_stats_allreduce(
        [&r = *reducer](double* data, int count) { r.allreduce_statistics(data, count); });
  spdlog::info("{}{}", reducer->describe(), sync_bn ? "; synchronized batch norm" : "");

  const PhysicsObjective objective(*problem);
  Trainer trainer(deck, *model, objective, *reducer, comm, &timeline);
  if (deck.precision != DType::f32 || trainer.scaler())
    spdlog::info(
        "precision: {} activations, fp32 parameters, gradients and loss{}{}", dtype_name(deck.precision),
        deck.precision != DType::f32 && deck.training.fp32_after_step > 0
            ? fmt::format("; fp32 after step {}", deck.training.fp32_after_step)
            : std::string(),
        trainer.scaler() ? fmt::format("; dynamic loss scaling from {:g}, growth after {} clean steps",
                                       trainer.scaler()->scale(), deck.loss_scaling.growth_interval)
                         : std::string());
  Progress p;
  Run run{deck, plan,    *problem, deck_yaml,           comm, *model, trainer, timeline,
          {},   nullptr, dir,      dir / "checkpoints", wall};
  restart(run, p, restart_from);
  // Only a run that will train owns the directory's deck: a rejected restart leaves it as it was.
  if (comm.rank() == 0) write_text_file_atomically((dir / "deck.resolved.yaml").string(), deck_yaml);
  run.eval_set =
      make_sample_set(*problem, deck.training.seed, eval_index_base, deck.evaluation.samples, comm);
  if (!run.eval_set.indices.empty()) {
    int lo = 1 << 30, hi = 0;
    for (int it : run.eval_set.report.iterations) lo = std::min(lo, it), hi = std::max(hi, it);
    spdlog::info("reference solutions: {} evaluation samples on this rank in {:.2f} s ({}-{} iterations, {})",
                 run.eval_set.indices.size(), run.eval_set.report.seconds, lo, hi,
                 run.eval_set.report.method);
  }
  std::unique_ptr<HistoryWriter> history;
  if (comm.rank() == 0)
    history = std::make_unique<HistoryWriter>(
        (dir / "history.csv").string(),
        std::vector<std::string>{"step", "wall_s", "loss", "lr", "grad_norm", "rel_l2_mean", "rel_l2_max",
                                 "samples_per_s", "gflops"},
        p.start);
  run.history = history.get();
  install_stop_handlers();
  CachingAllocator::host().reset_peak();
  cuda::reset_memory_peak();
  try {
    run_steps(run, p);
    return finish(run, p, *reducer);
  } catch (const IoError& e) {
    record_failure(run, p, e.what());
    throw;
  }
}

int run_train(const CliOptions& options) {
  const ValidatedDeck v = validate_deck(options);
  return train(v.deck, v.plan, to_yaml(v.deck), Communicator());
}

}  // namespace pdegen::app

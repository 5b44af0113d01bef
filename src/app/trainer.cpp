// The training loop (see trainer.hpp). One step on each rank, per micro-batch:
//   sample this rank's share of the micro-batch by global index -> U-Net forward -> lift ->
//   physics loss (a sum, gradient scaled by 1/B_global) -> lift backward -> U-Net backward, whose
//   finished gradients the reducer sums over ranks while backward goes on (last micro-batch only);
// then clip -> optimizer, identical on every rank. The optimizer drives this as a closure, since
// L-BFGS evaluates the loss several times per step.
#include "app/trainer.hpp"

#include <sys/resource.h>

#include <cmath>
#include <filesystem>
#include <pdegen/build_info.hpp>

#include "app/model.hpp"
#include "app/run_files.hpp"
#include "app/stop_signal.hpp"
#include "backend/cuda/cuda_context.hpp"
#include "core/allocator.hpp"
#include "core/log.hpp"
#include "core/timer.hpp"
#include "io/atomic_file.hpp"
#include "io/fields_file.hpp"
#include "optim/grad_clip.hpp"
#include "optim/loss_scaler.hpp"
#include "optim/phases.hpp"
#include "optim/schedule.hpp"
#include "parallel/consistency.hpp"
#include "parallel/nccl_communicator.hpp"
#include "parallel/reducer.hpp"
#include "physics/problem.hpp"

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

double peak_rss_mb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;  // Linux reports KiB
}

struct EvalResult {
  double mean = NAN, max = NAN;
  int samples = 0;
};

// The held-out evaluation set of this rank: inputs and reference solutions, made once.
struct EvalSet {
  std::vector<uint64_t> indices;  // this rank's global indices
  Tensor input, reference;
  int total = 0;
};

EvalSet make_eval_set(const PdeProblem& problem, const Deck& deck, const Communicator& comm) {
  EvalSet set;
  set.total = deck.evaluation.samples;
  const Share share = share_of(set.total, comm.rank(), comm.size());
  for (int64_t e = share.begin; e < share.end; ++e)
    set.indices.push_back(eval_index_base + static_cast<uint64_t>(e));
  if (set.indices.empty()) return set;
  problem.sample(deck.training.seed, set.indices, set.input);
  Timer t;
  std::vector<int> iterations;
  set.reference = problem.reference_solution(set.input, deck.evaluation.solver_tolerance, &iterations);
  int lo = 1 << 30, hi = 0;
  for (int it : iterations) lo = std::min(lo, it), hi = std::max(hi, it);
  spdlog::info(
      "reference solutions: {} evaluation samples on this rank in {:.2f} s ({}-{} iterations to {:.0e})",
      set.indices.size(), t.seconds(), lo, hi, deck.evaluation.solver_tolerance);
  return set;
}

// The network's output for `x` (on the model's device) in fp32: with mixed precision the network
// reads and writes `precision` (fp16/bf16) activations, while the lift and the FEM loss always
// compute and accumulate in fp32.
Tensor network_output(Model& model, const Tensor& x, DType precision, Mode mode) {
  return to_dtype(model.net->forward(to_dtype(x, precision), mode), DType::f32);
}

// The prediction for host `input`, returned on the host.
Tensor predict(Model& model, const PdeProblem& problem, const Tensor& input, DType precision) {
  const Device device = model.registry.flat_values().device();
  return problem.lift(network_output(model, input.to(device), precision, Mode::eval)).to(Device::cpu);
}

EvalResult evaluate(Model& model, const PdeProblem& problem, const EvalSet& set, DType precision,
                    const Communicator& comm) {
  double sum = 0, mx = 0;
  if (!set.indices.empty()) {
    const auto rel = relative_l2(predict(model, problem, set.input, precision), set.reference);
    for (double r : rel) sum += r, mx = std::max(mx, r);
  }
  EvalResult r;
  r.samples = set.total;
  r.mean = comm.sum(sum) / std::max(1, set.total);
  r.max = comm.max(mx);
  return r;
}

void write_fields(Model& model, const PdeProblem& problem, const EvalSet& set, const Deck& deck,
                  const std::string& deck_yaml, const Communicator& comm) {
  // The first field_samples evaluation samples, each rank writing the ones it holds.
  const int64_t total = std::min<int64_t>(deck.output.field_samples, set.total);
  const Share share = share_of(set.total, comm.rank(), comm.size());
  const int64_t first = std::min(share.begin, total), last = std::min(share.end, total);
  const int64_t count = last - first;
  Tensor input = count > 0 ? set.input.slice_batch(0, count) : Tensor::empty(problem.batch_shape(0));
  Tensor ref = count > 0 ? set.reference.slice_batch(0, count) : input;
  Tensor pred = count > 0 ? predict(model, problem, input, deck.precision) : input;
  Tensor err = difference(pred, ref);
  std::vector<int64_t> gidx(set.indices.begin(), set.indices.begin() + count);
  FieldsMetadata meta{std::string(problem.name()), problem.origin(), problem.spacing(), deck_yaml};
  FieldsWriter writer(fs::path(deck.output.dir) / "fields.h5", meta, comm.comm(), total, first, last);
  writer.add_field(problem.input_name(), input);
  writer.add_field("u_pred", pred);
  writer.add_field("u_ref", ref);
  writer.add_field("error", err);
  writer.set_sample_index(gidx);
  writer.write();
  spdlog::info("fields: {} ({} samples; open {} in ParaView or VisIt)", writer.path(), total,
               writer.xdmf_path());
}

// The loss scale a checkpoint was written with; a checkpoint from a run without loss scaling keeps
// the deck's initial scale.
void restore_loss_scale(LossScaler& scaler, const CheckpointData& data) {
  const double scale = data.scalar("loss_scale", -1);
  if (scale > 0)
    scaler.restore(std::clamp(scale, scaler.config().min_scale, scaler.config().max_scale),
                   static_cast<int64_t>(data.scalar("loss_scale_clean_steps", 0)));
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

// The samples of micro-batch m on this rank: the global batch is cut into `micro` micro-batches
// first, then each is shared over the ranks, so a micro-batch is the same set of global indices on
// any number of ranks (batch-norm statistics included).
Share micro_batch_share(int64_t B, int m, int micro, const Communicator& comm) {
  const Share global = share_of(B, m, micro);
  const Share mine = share_of(global.count(), comm.rank(), comm.size());
  return {global.begin + mine.begin, global.begin + mine.end};
}

}  // namespace

int train(const Deck& deck, const UNetPlan& plan, const std::string& deck_yaml, const Communicator& comm) {
  Timer wall;
  const auto problem = make_problem(deck.problem);
  const fs::path dir = deck.output.dir;
  const fs::path ckpt_dir = dir / "checkpoints";
  if (comm.rank() == 0) {
    fs::create_directories(ckpt_dir);
    write_text_file_atomically((dir / "deck.resolved.yaml").string(), deck_yaml);
  }
  comm.barrier();
  add_log_file((dir / "pdegen.log").string());
  spdlog::info("pdegen {} ({}) training on {} rank(s), device {}; effective configuration:\n{}",
               build::version, build::git_hash, comm.size(), device_name(deck.device), deck_yaml);

  const int64_t B = deck.training.batch_size, steps = deck.training.steps;
  const Share share = share_of(B, comm.rank(), comm.size());
  if (deck.device == Device::cuda) {
    // One GPU per rank, chosen by the rank's place on its (physical, never simulated) node.
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
    // GPU gradients are reduced by NCCL, which needs a GPU of its own for every rank of a node.
    std::string reason;
    if (comm.size() > 1 && !nccl_usable(comm, &reason))
      throw UserError(
          fmt::format("device: cuda on {} ranks needs one GPU per rank for NCCL: {}", comm.size(), reason));
  }
  auto model = build_model(plan, deck.training.seed, deck.device);
  ParameterRegistry& params = model->master();  // what the optimizer works on (host fp32 on a GPU run)
  // The optimizer of the phase that runs a step (optimizer.then: e.g. Adam, then L-BFGS).
  std::unique_ptr<Optimizer> optimizer;
  int phase_index = -1;
  auto use_phase_of = [&](int64_t step) {
    const OptimizerPhaseSpan phase = optimizer_phase(deck.optimizer, step, steps);
    if (phase.index != phase_index) {
      optimizer = make_optimizer(*phase.settings, params, comm);
      phase_index = phase.index;
      if (step > 0)
        spdlog::info("step {}: optimizer phase {} ({}) takes over", step + 1, phase.index,
                     name_of(phase.settings->type));
    }
    return phase;
  };
  use_phase_of(0);
  spdlog::info(
      "network: {} parameters, {:.2f} GFLOP per training step (global batch {}), this rank holds {} samples",
      plan.parameters, plan.flops_per_step / 1e9, B, share.count());
  const int micro = deck.training.micro_batches;

  // Synchronized batch norm: statistics over the whole (micro-)batch, whatever the rank count.
  const bool sync_bn = deck.network.norm == NormKind::batch && comm.size() > 1 &&
                       deck.parallel.sync_batchnorm != SyncBatchNorm::off;
  if (sync_bn) {
    if (B / micro < comm.size())
      throw UserError(
          fmt::format("synchronized batch norm needs a sample on every rank in every micro-batch, but "
                      "training.batch_size "
                      "({}) / training.micro_batches ({}) is below the {} ranks: raise the batch, or lower "
                      "micro_batches or "
                      "the rank count",
                      B, micro, comm.size()));
  } else if (deck.network.norm == NormKind::batch && comm.size() > 1) {
    spdlog::warn(
        "parallel.sync_batchnorm is off: each rank normalises with its own samples' statistics, so "
        "the training depends on the rank count");
  }

  // Timeline (one clock origin for all ranks) and the gradient reducer.
  Timeline timeline;
  comm.barrier();
  timeline.start_clock();
  if (deck.timeline.enabled) model->net->set_timeline(&timeline);
  // On the run's device: on a GPU the NCCL reducer sums the device gradients while backward goes on,
  // and the reduced gradients are then copied to the host master weights (pull_grads).
  const std::unique_ptr<GradientReducer> reducer_owner =
      make_reducer(model->registry, comm, deck.parallel, deck.timeline.enabled ? &timeline : nullptr);
  GradientReducer& reducer = *reducer_owner;
  // Synchronized batch norm's sums go through the reducer: on a GPU they then run through NCCL on
  // the reducer's stream, after the buckets already queued, never beside them.
  if (sync_bn)
    model->net->set_stats_allreduce(
        [&reducer](double* data, int count) { reducer.allreduce_statistics(data, count); });
  spdlog::info("{}{}", reducer.describe(), sync_bn ? "; synchronized batch norm" : "");

  // Dynamic loss scaling (loss_scaling.*; on by default for fp16).
  std::unique_ptr<LossScaler> scaler;
  if (deck.loss_scaling.enabled) scaler = std::make_unique<LossScaler>(deck.loss_scaling);
  if (deck.precision != DType::f32 || scaler)
    spdlog::info("precision: {} activations, fp32 parameters, gradients and loss{}",
                 dtype_name(deck.precision),
                 scaler ? fmt::format("; dynamic loss scaling from {:g}, growth after {} clean steps",
                                      scaler->scale(), deck.loss_scaling.growth_interval)
                        : std::string());

  // Restart: an explicit file, or the newest checkpoint of this run directory.
  int64_t start = 0;
  std::string restart = deck.training.restart;
  if (restart == "latest") {
    restart = latest_checkpoint(ckpt_dir.string());
    if (restart.empty())
      spdlog::info("training.restart is 'latest' but {} has no checkpoint: starting at step 0",
                   ckpt_dir.string());
  } else if (restart == "none") {
    restart.clear();
  }
  double restored_loss = NAN;  // the loss of the checkpoint's last step, if it recorded one
  if (!restart.empty()) {
    const CheckpointData data = read_checkpoint(restart);
    restored_loss = data.scalar("loss", NAN);
    use_phase_of(std::max<int64_t>(data.step - 1, 0));  // the state is that of its last step's phase
    restore_model(*model, data, restart, optimizer.get());
    optimizer->scatter_state();  // sharded state: keep this rank's share of the full vectors
    if (scaler) restore_loss_scale(*scaler, data);
    start = data.step;
    if (data.seed != deck.training.seed)
      spdlog::warn("{} was written with training.seed {}, this run uses {}: the sample sequence changes",
                   restart, data.seed, deck.training.seed);
    spdlog::info("restarted from {} at step {}", restart, start);
  }
  if (start > steps)
    throw UserError(fmt::format("the checkpoint is at step {}, beyond training.steps = {}", start, steps));

  const EvalSet eval_set = make_eval_set(*problem, deck, comm);
  HistoryWriter* history = nullptr;
  std::unique_ptr<HistoryWriter> history_owner;
  if (comm.rank() == 0) {
    history_owner = std::make_unique<HistoryWriter>(
        (dir / "history.csv").string(),
        std::vector<std::string>{"step", "wall_s", "loss", "lr", "grad_norm", "rel_l2_mean", "rel_l2_max",
                                 "samples_per_s", "gflops"},
        start);
    history = history_owner.get();
  }

  double loss = restored_loss;  // the last step's (global) loss
  // Checkpoints hold the full, unsharded state (rank 0 writes it), so any rank count reads them.
  auto save = [&](int64_t completed) {
    optimizer->gather_state();  // collective; a no-op for replicated optimizer state
    if (comm.rank() != 0) return std::string();
    const std::string path = (ckpt_dir / checkpoint_file_name(completed)).string();
    CheckpointData data = snapshot(*model, optimizer.get(), completed, deck.training.seed,
                                   static_cast<int64_t>(completed * B), deck_yaml);
    if (std::isfinite(loss)) data.scalars.emplace_back("loss", loss);  // summary.json of a restart at the end
    if (scaler) {
      data.scalars.emplace_back("loss_scale", scaler->scale());
      data.scalars.emplace_back("loss_scale_clean_steps", static_cast<double>(scaler->clean_steps()));
    }
    write_checkpoint(path, data);
    prune_checkpoints(ckpt_dir.string(), deck.output.checkpoint_keep);
    return path;
  };

  install_stop_handlers();
  const double inv_batch = 1.0 / static_cast<double>(B);
  Tensor input;
  std::vector<uint64_t> indices;
  double grad_norm = NAN, window_time = 0, train_time = 0;
  // Loss/gradient evaluations: one per step for first-order optimizers, several for L-BFGS. Throughput
  // counts evaluations (each is a forward and backward of the whole batch).
  int64_t window_steps = 0, window_evals = 0, total_evals = 0, completed = start;
  EvalResult last_eval;
  std::string status = "completed", message;
  int exit_code = 0;
  CachingAllocator::host().reset_peak();
  cuda::reset_memory_peak();

  // The global loss and gradient at the current parameters, for the optimizer (sample set of step s).
  int64_t s = start;
  int64_t batch_step = start;  // whose samples the closure uses: s, or a fixed L-BFGS batch's first step
  // With loss scaling, an evaluation whose summed gradient overflowed reports an infinite loss, so
  // that the optimizer takes no step (Optimizer::step leaves everything untouched then); the loss
  // itself is kept here for the log, and the step counts as skipped, not as diverged.
  double evaluated_loss = NAN;
  bool overflowed = false;
  int64_t skipped_steps = 0;
  const LossClosure loss_and_gradient = [&]() -> double {
    const double grad_scale = inv_batch * (scaler ? scaler->scale() : 1.0);
    model->push_values();  // the optimizer may have moved the master weights (a line search)
    model->registry.zero_grads();
    double loss_sum = 0;
    for (int m = 0; m < micro; ++m) {
      const bool last = m == micro - 1;
      if (last) reducer.begin_backward(true);  // even without samples here: the collectives must match
      const Share part = micro_batch_share(B, m, micro, comm);
      if (part.count() == 0) continue;
      indices.clear();
      for (int64_t p = part.begin; p < part.end; ++p)
        indices.push_back(static_cast<uint64_t>(batch_step * B + p));
      Tensor du;
      {
        const TimelineScope event(&timeline, "sample + forward + loss");
        problem->sample(deck.training.seed, indices, input);
        const Tensor x = input.to(deck.device);
        const Tensor u = problem->lift(network_output(*model, x, deck.precision, Mode::train));
        loss_sum += problem->loss(u, x, grad_scale, &du, nullptr);
      }
      model->net->backward(to_dtype(problem->lift_backward(du), deck.precision));
    }
    {
      const TimelineScope event(&timeline, "wait for gradient reduction");
      reducer.finish();
    }
    // After finish(): a rank that had no samples must have queued its buckets before it blocks in an
    // MPI collective, or ranks still in backward could wait on NCCL for it.
    const double global = comm.sum(loss_sum) / static_cast<double>(B);
    model->pull_grads();  // on a GPU: queued after the reduction on the compute stream, and waits for it
    evaluated_loss = global;
    overflowed = false;
    if (!scaler || !std::isfinite(global)) return global;  // a non-finite loss is divergence, not overflow
    // The summed gradient is identical on every rank, so every rank sees the same overflow.
    Tensor grads = params.flat_grads();  // a handle on the registry's buffer
    overflowed = unscale_and_check(grads, 1.0 / scaler->scale());
    return overflowed ? INFINITY : global;
  };

  for (; s < steps; ++s) {
    Timer step_timer;
    timeline.set_active(deck.timeline.enabled && s + 1 >= deck.timeline.first_step &&
                        s + 1 < deck.timeline.first_step + deck.timeline.steps);
    const OptimizerPhaseSpan phase = use_phase_of(s);
    batch_step =
        phase.settings->type == OptimizerKind::lbfgs && phase.settings->lbfgs.batch == LbfgsBatch::fixed
            ? phase.begin
            : s;
    const double lr = phase_learning_rate(phase, s);
    const double scale = scaler ? scaler->scale() : 1.0;
    const StepResult result = optimizer->step(params, lr, loss_and_gradient, phase.settings->grad_clip);
    model->push_values();
    loss = result.loss;
    grad_norm = result.grad_norm;
    if (scaler) {
      scaler->update(overflowed);
      if (overflowed) {
        ++skipped_steps;
        loss = evaluated_loss;
        spdlog::warn("step {}: the gradient overflowed at loss scale {:g}: step skipped, scale now {:g}",
                     s + 1, scale, scaler->scale());
      }
    }
    if (!std::isfinite(loss)) {
      const std::string last = latest_checkpoint(ckpt_dir.string());
      message = fmt::format(
          "the loss is {} at step {}: training diverged (lower optimizer.lr, or enable "
          "optimizer.grad_clip); the last good checkpoint is {}",
          loss, s + 1, last.empty() ? "none" : last);
      spdlog::error("{}", message);
      status = "diverged";
      exit_code = exit_diverged;
      break;
    }
    if (deck.parallel.consistency_every > 0 && (s + 1) % deck.parallel.consistency_every == 0) {
      std::vector<const Tensor*> state{&params.flat_values()};
      optimizer->gather_state();  // sharded state: the full vectors, identical on every rank
      for (auto& [name, tensor] : optimizer->state()) state.push_back(tensor);
      check_replicas_identical(state_checksum(state), comm, s + 1);
    }
    completed = s + 1;
    const double dt = step_timer.seconds();
    window_time += dt;
    train_time += dt;
    ++window_steps;
    window_evals += result.evaluations;
    total_evals += result.evaluations;

    const bool last_step = completed == steps;
    const bool do_eval = last_step || (deck.evaluation.every > 0 && completed % deck.evaluation.every == 0);
    const bool do_log = do_eval || completed % deck.training.log_every == 0;
    if (do_eval) last_eval = evaluate(*model, *problem, eval_set, deck.precision, comm);
    if (do_log) {
      const double sps = static_cast<double>(B * window_evals) / window_time;
      const double gflops = plan.flops_per_step * static_cast<double>(window_evals) / window_time / 1e9;
      const double eta =
          train_time / static_cast<double>(completed - start) * static_cast<double>(steps - completed);
      const int width = static_cast<int>(std::to_string(steps).size());
      std::string line =
          fmt::format("step {:>{}}/{} | loss {:.4e} | lr {:.1e}", completed, width, steps, loss, lr);
      if (do_eval)
        line += fmt::format(" | rel_l2 {:.3f}% (max {:.3f}%)", 100 * last_eval.mean, 100 * last_eval.max);
      if (scaler) line += fmt::format(" | scale {:g}", scaler->scale());
      line += fmt::format(" | {:.0f} samples/s | {:.1f} GFLOP/s | ETA {}", sps, gflops, format_duration(eta));
      spdlog::info("{}", line);
      if (history)
        history->row({std::to_string(completed), fmt::format("{:.3f}", wall.seconds()),
                      fmt::format("{:.9e}", loss), fmt::format("{:.6e}", lr),
                      fmt::format("{:.6e}", grad_norm), do_eval ? fmt::format("{:.6e}", last_eval.mean) : "",
                      do_eval ? fmt::format("{:.6e}", last_eval.max) : "", fmt::format("{:.2f}", sps),
                      fmt::format("{:.2f}", gflops)});
      window_time = 0;
      window_steps = 0;
      window_evals = 0;
    }
    if (!last_step && deck.training.checkpoint_every > 0 && completed % deck.training.checkpoint_every == 0)
      save(completed);
    // Every rank must agree to stop, or the next collective would hang.
    const int sig = static_cast<int>(comm.max(static_cast<double>(stop_requested())));
    if (sig != 0 && !last_step) {
      status = "interrupted";
      exit_code = 128 + sig;
      message = fmt::format("stopped by signal {} after step {}", sig, completed);
      spdlog::warn("{}; writing a final checkpoint", message);
      break;
    }
  }

  std::string final_checkpoint;
  if (status != "diverged") {
    final_checkpoint = save(completed);
    if (comm.rank() == 0) spdlog::info("checkpoint: {}", final_checkpoint);
    if (status == "completed" && deck.output.fields)
      write_fields(*model, *problem, eval_set, deck, deck_yaml, comm);
  }
  if (std::isnan(last_eval.mean) && status != "diverged")
    last_eval = evaluate(*model, *problem, eval_set, deck.precision, comm);

  timeline.set_active(false);
  if (deck.timeline.enabled) write_timeline(timeline, dir / "timeline.json", comm);
  // Reduction figures, averaged over ranks.
  const ReducerStats& rs = reducer.stats();
  const double comm_seconds = comm.sum(rs.comm_seconds) / comm.size();
  const double exposed_seconds = comm.sum(rs.exposed_seconds) / comm.size();
  const double exposed_fraction = comm_seconds > 0 ? std::min(1.0, exposed_seconds / comm_seconds) : 0.0;
  if (comm.size() > 1)
    spdlog::info(
        "gradient reduction: {:.3f} s in {} reductions, {:.1f}% of it exposed (not hidden by backward)",
        comm_seconds, rs.steps, 100 * exposed_fraction);

  const double steps_run = static_cast<double>(completed - start);
  const auto mem = CachingAllocator::host().stats();
  if (comm.rank() == 0) {
    JsonObject eval_json, throughput, memory, summary;
    eval_json.add("rel_l2_mean", last_eval.mean)
        .add("rel_l2_max", last_eval.max)
        .add("samples", last_eval.samples);
    const double evals = static_cast<double>(total_evals);
    throughput.add("samples_per_s", train_time > 0 ? static_cast<double>(B) * evals / train_time : 0.0)
        .add("gflops", train_time > 0 ? plan.flops_per_step * evals / train_time / 1e9 : 0.0)
        .add("step_seconds", steps_run > 0 ? train_time / steps_run : 0.0)
        .add("evaluations", total_evals);
    memory.add("peak_rss_mb", peak_rss_mb())
        .add("allocator_peak_mb", static_cast<double>(mem.peak_in_use) / (1024.0 * 1024.0));
    if (deck.device == Device::cuda)
      memory.add("device_peak_mb", static_cast<double>(cuda::memory_stats().peak_in_use) / (1024.0 * 1024.0));
    summary.add("status", status)
        .add("message", message)
        .add("steps", completed)
        .add("start_step", start)
        .add("wall_seconds", wall.seconds())
        .add("train_seconds", train_time)
        .add("final_loss", loss)
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
        .add("skipped_steps", skipped_steps)
        .add("pde", std::string(problem->name()))
        .add("parameters", plan.parameters)
        .add("checkpoint", final_checkpoint)
        .add("pdegen_version", fmt::format("{} ({})", build::version, build::git_hash));
    write_text_file_atomically((dir / "summary.json").string(), summary.dump() + "\n");
    spdlog::info(
        "{}: {} steps in {}, final loss {:.6e}, rel_l2 mean {:.3f}% max {:.3f}% over {} held-out samples; "
        "summary: {}",
        status, completed, format_duration(wall.seconds()), loss, 100 * last_eval.mean, 100 * last_eval.max,
        last_eval.samples, (dir / "summary.json").string());
  }
  return exit_code;
}

}  // namespace pdegen::app

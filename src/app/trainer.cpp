// The training step (see trainer.hpp).
#include "app/trainer.hpp"

#include <algorithm>
#include <cmath>

#include "core/log.hpp"
#include "core/watchdog.hpp"

namespace pdegen::app {

Share micro_batch_share(int64_t B, int m, int micro, const Communicator& comm) {
  const Share global = share_of(B, m, micro);
  const Share mine = share_of(global.count(), comm.rank(), comm.size());
  return {global.begin + mine.begin, global.begin + mine.end};
}

Trainer::Trainer(const Deck& deck, Model& model, Objective& objective, GradientReducer& reducer,
                 const Communicator& comm, Timeline* timeline, int64_t first_step, int64_t first_sample)
    : deck_(deck),
      model_(model),
      objective_(objective),
      reducer_(reducer),
      comm_(comm),
      timeline_(timeline),
      first_step_(first_step),
      sample_offset_(first_sample) {
  if (deck.loss_scaling.enabled) scaler_ = std::make_unique<LossScaler>(deck.loss_scaling);
  use_phase_of(0);
}

OptimizerPhaseSpan Trainer::use_phase_of(int64_t local) {
  const OptimizerPhaseSpan phase = optimizer_phase(deck_.optimizer, local, deck_.training.steps);
  if (phase.index != phase_index_) {
    optimizer_ = make_optimizer(*phase.settings, model_.master(), comm_);
    optimizer_type_ = phase.settings->type;
    if (phase_index_ >= 0 && local > 0)
      spdlog::info("step {}: optimizer phase {} ({}) takes over", first_step_ + local + 1, phase.index,
                   name_of(phase.settings->type));
    phase_index_ = phase.index;
  }
  return phase;
}

int64_t Trainer::next_sample(int64_t completed) const {
  return sample_offset_ + (completed - first_step_) * deck_.training.batch_size;
}

bool Trainer::continue_from(Trainer& previous, bool carry_optimizer) {
  if (scaler_ && previous.scaler_) scaler_ = std::move(previous.scaler_);
  if (!carry_optimizer || optimizer_type_ != previous.optimizer_type_ || !previous.optimizer_ ||
      &model_ != &previous.model_)
    return false;
  optimizer_ = std::move(previous.optimizer_);
  return true;
}

void Trainer::rank_indices(int64_t batch_step, int m, std::vector<uint64_t>& out) const {
  const int64_t B = deck_.training.batch_size;
  const Share part = micro_batch_share(B, m, deck_.training.micro_batches, comm_);
  out.clear();
  for (int64_t p = part.begin; p < part.end; ++p)
    out.push_back(static_cast<uint64_t>(sample_offset_ + batch_step * B + p));
}

void Trainer::announce_next(int64_t batch_step, int m) {
  const int micro = deck_.training.micro_batches;
  for (int k = 1; k <= objective_.read_ahead(); ++k) {
    const int next = m + k;
    rank_indices(batch_step + next / micro, next % micro, ahead_);
    if (!ahead_.empty()) objective_.will_need(ahead_);
  }
}

// The global loss and gradient at the current parameters on the samples of `batch_step`.
Evaluation Trainer::evaluate(int64_t batch_step, DType precision, bool& overflowed) {
  const int64_t B = deck_.training.batch_size;
  const int micro = deck_.training.micro_batches;
  const double grad_scale = 1.0 / static_cast<double>(B) * (scaler_ ? scaler_->scale() : 1.0);
  model_.push_values();  // the optimizer may have moved the master weights (a line search)
  model_.registry.zero_grads();
  double loss_sum = 0;
  for (int m = 0; m < micro; ++m) {
    if (m == micro - 1)
      reducer_.begin_backward(true);  // even without samples here: the collectives must match
    rank_indices(batch_step, m, indices_);
    if (indices_.empty()) continue;
    announce_next(batch_step, m);
    Tensor d_output;
    DType output_dtype = DType::f32;  // the network's: its gradient goes back in that type
    {
      const TimelineScope event(timeline_, "sample + forward + loss");
      objective_.inputs(deck_.training.seed, indices_, input_);
      const Tensor x = input_.to(deck_.device);
      const Tensor output = model_.net->forward(to_dtype(x, precision), Mode::train);
      output_dtype = output.dtype();
      loss_sum += objective_.loss(to_dtype(output, DType::f32), x, grad_scale, d_output);
    }
    model_.net->backward(to_dtype(d_output, output_dtype));
  }
  {
    const TimelineScope event(timeline_, "wait for gradient reduction");
    reducer_.finish();
  }
  // After finish(): a rank that had no samples must have queued its buckets before it blocks in an
  // MPI collective, or ranks still in backward could wait on NCCL for it.
  const double global = comm_.sum(loss_sum) / static_cast<double>(B);
  {
    // On a GPU this waits for the NCCL reduction, which a stalled rank would hold up forever.
    const watchdog::Wait wait("the gradient reduction (copy of the summed gradient to the host)");
    model_.pull_grads();  // on a GPU: queued after the reduction on the compute stream, and waits for it
  }
  // The summed gradient is identical on every rank, so every rank finds the same. Without loss
  // scaling the factor is 1, which leaves every value as it is.
  Tensor grads = model_.master().flat_grads();  // a handle on the registry's buffer
  overflowed = unscale_and_check(grads, scaler_ ? 1.0 / scaler_->scale() : 1.0);
  return Evaluation(global, !overflowed);
}

StepOutcome Trainer::step(int64_t s) {
  const int64_t local = s - first_step_;
  const OptimizerPhaseSpan phase = use_phase_of(local);
  // A fixed L-BFGS batch keeps the samples of the phase's first step.
  const bool fixed_batch =
      phase.settings->type == OptimizerKind::lbfgs && phase.settings->lbfgs.batch == LbfgsBatch::fixed;
  const int64_t batch_step = fixed_batch ? phase.begin : local;
  StepOutcome out;
  out.lr = phase_learning_rate(phase, local);
  out.loss_scale = scaler_ ? scaler_->scale() : 1.0;
  bool overflowed = false;  // in the last evaluation
  const DType precision = precision_at(deck_, s);
  const LossClosure closure = [&] { return evaluate(batch_step, precision, overflowed); };
  const StepResult result = optimizer_->step(model_.master(), out.lr, closure, phase.settings->grad_clip);
  model_.push_values();
  out.loss = result.loss;
  out.grad_norm = result.grad_norm;
  out.evaluations = result.evaluations;
  if (scaler_ && std::isfinite(out.loss)) scaler_->update(overflowed);
  // A finite gradient can still give a non-finite update (Adam's second moment overflowing to inf):
  // such a step is no good step, and its parameters must never reach a checkpoint.
  Tensor values = model_.master().flat_values();
  if (result.updated && has_non_finite(values)) {
    out.status = StepOutcome::Status::diverged;
    out.cause = "the update made the parameters non-finite";
  } else if (result.updated)
    out.status = StepOutcome::Status::updated;
  else if (scaler_ && overflowed && std::isfinite(out.loss))
    out.status = StepOutcome::Status::skipped;
  else
    out.status = StepOutcome::Status::diverged;
  return out;
}

int64_t Trainer::restore(const CheckpointData& data, const std::string& path) {
  objective_.check_state(data, path);
  // The state is that of its last step's phase.
  use_phase_of(std::max<int64_t>(data.step - first_step_ - 1, 0));
  restore_model(model_, data, path, optimizer_.get());
  // The sample stream goes on where the checkpoint's stopped, whatever batch size made it.
  sample_offset_ = data.next_sample - (data.step - first_step_) * deck_.training.batch_size;
  optimizer_->scatter_state();  // sharded state: keep this rank's share of the full vectors
  const double scale = data.scalar("loss_scale", -1);
  if (scaler_ && scale > 0)  // a checkpoint from a run without loss scaling keeps the initial scale
    scaler_->restore(std::clamp(scale, scaler_->config().min_scale, scaler_->config().max_scale),
                     static_cast<int64_t>(data.scalar("loss_scale_clean_steps", 0)));
  return data.step;
}

CheckpointData Trainer::snapshot(int64_t completed, double loss, const std::string& deck_yaml) {
  optimizer_->gather_state();  // collective; a no-op for replicated optimizer state
  CheckpointData data = app::snapshot(model_, optimizer_.get(), completed, deck_.training.seed,
                                      next_sample(completed), deck_yaml);
  if (std::isfinite(loss)) data.scalars.emplace_back("loss", loss);  // summary.json of a restart at the end
  objective_.add_state(next_sample(completed), data.scalars);
  if (scaler_) {
    data.scalars.emplace_back("loss_scale", scaler_->scale());
    data.scalars.emplace_back("loss_scale_clean_steps", static_cast<double>(scaler_->clean_steps()));
  }
  return data;
}

}  // namespace pdegen::app

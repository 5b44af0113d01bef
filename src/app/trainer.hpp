// One training step, testable on its own: the Trainer takes a model, an Objective and the run's
// gradient reducer, and step(s) trains on the samples of step s and says what happened. Per
// micro-batch on each rank:
//   objective inputs of this rank's share (by global index) -> network forward -> objective loss
//   (a sum, gradient scaled by 1/B_global) -> network backward, whose finished gradients the reducer
//   sums over ranks while backward goes on (last micro-batch only);
// then the global loss, the gradient check (non-finite: the step is skipped under loss scaling,
// diverged otherwise) and the optimizer of the step's phase, identical on every rank. The optimizer
// drives the evaluation as a closure, since L-BFGS evaluates several times per step.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "app/model.hpp"
#include "app/objective.hpp"
#include "config/deck.hpp"
#include "core/timeline.hpp"
#include "optim/loss_scaler.hpp"
#include "optim/optimizer.hpp"
#include "optim/phases.hpp"
#include "parallel/communicator.hpp"
#include "parallel/gradient_reducer.hpp"

namespace pdegen::app {

struct StepOutcome {
  enum class Status {
    updated,   // the optimizer moved the parameters
    skipped,   // the gradient overflowed under loss scaling: nothing changed, the scale backed off
    diverged,  // the loss or the gradient is not finite without loss scaling (nothing changed), or
               // the update made the parameters non-finite
  };
  Status status = Status::updated;
  double loss = 0;        // global loss at the parameters the step started from
  double grad_norm = 0;   // global gradient norm there, before clipping (NaN unless updated)
  double lr = 0;          // the learning rate of the step
  int evaluations = 0;    // forward + backward passes of the whole batch
  double loss_scale = 1;  // the scale the step ran with
  std::string cause;      // diverged with a finite loss and gradient: what was not finite
};

class Trainer {
 public:
  // `deck` (the optimizer, training and precision sections), `model`, `objective`, `reducer` and
  // `comm` must outlive the Trainer; `timeline` may be null. The Trainer's own step 0 is training
  // step `first_step` of the run (a later visit of a multigrid cycle starts after the steps of the
  // visits before it), and takes the samples from global index `first_sample` on; its learning-rate
  // schedule and optimizer phases run over the deck's training.steps from there.
  Trainer(const Deck& deck, Model& model, Objective& objective, GradientReducer& reducer,
          const Communicator& comm, Timeline* timeline, int64_t first_step = 0, int64_t first_sample = 0);

  // One optimizer step on the samples of training step s (0-based, of the run).
  StepOutcome step(int64_t s);

  // The optimizer phase that runs the Trainer's own step `local`; its optimizer is made on a phase
  // change.
  OptimizerPhaseSpan use_phase_of(int64_t local);
  Optimizer& optimizer() { return *optimizer_; }
  LossScaler* scaler() { return scaler_.get(); }
  int64_t first_step() const { return first_step_; }
  // The global index of the first sample after `completed` steps of the run.
  int64_t next_sample(int64_t completed) const;

  // Takes over from the Trainer of the visit before: the loss scale always, the optimizer with its
  // state when `carry_optimizer`, it is of the type this Trainer's first phase runs and it trains
  // the same model (so its state still fits the parameters). Returns whether it was taken.
  bool continue_from(Trainer& previous, bool carry_optimizer);

  // Restores parameters, buffers, the optimizer state of the checkpoint's phase and the loss scale;
  // returns the checkpoint's step.
  int64_t restore(const CheckpointData& data, const std::string& path);
  // The state after `completed` steps of the run, for a checkpoint (collective: sharded optimizer
  // state is gathered on every rank).
  CheckpointData snapshot(int64_t completed, double loss, const std::string& deck_yaml);

 private:
  Evaluation evaluate(int64_t batch_step, DType precision, bool& overflowed);
  // This rank's global indices of micro-batch m of the Trainer's step `batch_step`.
  void rank_indices(int64_t batch_step, int m, std::vector<uint64_t>& out) const;
  // Tells an objective that reads ahead which micro-batches follow micro-batch m of `batch_step`.
  void announce_next(int64_t batch_step, int m);

  const Deck& deck_;
  Model& model_;
  Objective& objective_;
  GradientReducer& reducer_;
  const Communicator& comm_;
  Timeline* timeline_;
  std::unique_ptr<Optimizer> optimizer_;
  int phase_index_ = -1;
  OptimizerKind optimizer_type_ = OptimizerKind::adam;  // of the phase running
  std::unique_ptr<LossScaler> scaler_;
  Tensor input_;
  std::vector<uint64_t> indices_, ahead_;
  int64_t first_step_ = 0;     // the run's step of this Trainer's step 0
  int64_t sample_offset_ = 0;  // global index of the first sample of this Trainer's step 0
};

// The samples of micro-batch m on this rank: the global batch is cut into `micro` micro-batches
// first, then each is shared over the ranks, so a micro-batch is the same set of global indices on
// any number of ranks (batch-norm statistics included).
Share micro_batch_share(int64_t B, int m, int micro, const Communicator& comm);

}  // namespace pdegen::app

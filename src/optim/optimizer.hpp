// Optimizers: one update of the parameters from the registry's flat gradient buffer.
//
// First-order optimizers (Adam, AdamW, SGD, LARS, LAMB) run fused loops over the flat buffers
// (core/parameter.hpp). The alignment padding between parameters has zero value and zero gradient,
// and every update maps (0, 0, zero state) to zero (LARS and LAMB never touch it), so the padding
// stays zero. Adam, AdamW and SGD follow PyTorch's formulas (torch.optim), so a run can be compared
// with its PyTorch peer step by step. Every update is bit-identical for any number of threads and on
// every rank: element-wise, or with per-parameter norms summed in a fixed order.
//
// L-BFGS needs to re-evaluate the loss inside its line search, so every optimizer also offers a
// closure step: the trainer hands over a function that evaluates the GLOBAL loss and gradient at
// the registry's current values. The first-order optimizers call it once.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/deck.hpp"
#include "core/parameter.hpp"
#include "core/tensor.hpp"
#include "parallel/communicator.hpp"

namespace pdegen {

// What a closure call found at the registry's current values: the global loss, with the global
// gradient (summed over ranks, already divided by the global batch) in flat_grads(), identical bit
// for bit on every rank. `usable` is false when the gradient must not be used (it is not finite,
// e.g. overflowed under loss scaling): no optimizer updates from such a point. A plain loss value
// converts to a usable evaluation.
struct Evaluation {
  double loss = 0;
  bool usable = true;
  Evaluation(double value, bool gradient_usable = true) : loss(value), usable(gradient_usable) {}  // NOLINT
  bool finite() const;  // usable, with a finite loss
};
using LossClosure = std::function<Evaluation()>;

struct StepResult {
  double loss = 0;       // at the values the step started from
  double grad_norm = 0;  // global L2 norm of the gradient there, before clipping (NaN: not updated)
  int evaluations = 0;   // closure calls the step made
  bool updated = false;  // false: the first evaluation was not finite(), nothing was touched
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  virtual std::string_view name() const = 0;

  // One update of params.flat_values() from params.flat_grads() with learning rate `lr` (the
  // schedule's value for this step); then step_count() grows by one. Optimizers that need the
  // closure (L-BFGS) refuse this.
  virtual void step(ParameterRegistry& params, double lr) = 0;

  // One update with the closure. The default (first-order): evaluate once; when the evaluation is
  // not finite(), return without touching anything (the trainer decides); else clip the gradient by
  // its global norm to `grad_clip` (0: no clipping) and step(params, lr).
  virtual StepResult step(ParameterRegistry& params, double lr, const LossClosure& closure, double grad_clip);

  // Named state tensors (flat, full length: never a rank's shard) for checkpoints: restoring them
  // and step_count() makes the next step bit-identical to the one an uninterrupted run takes.
  // Checkpoint protocol, for optimizers that shard their state over ranks:
  //   writing: gather_state() on EVERY rank (collective), then state() where the file is written;
  //   reading: state() on every rank, copy the checkpoint into the tensors, set_step_count(), then
  //            scatter_state() on EVERY rank (collective), which keeps this rank's share.
  // For unsharded optimizers both are no-ops and state() is the live state.
  virtual std::vector<std::pair<std::string, Tensor*>> state() = 0;
  virtual void gather_state() {}
  virtual void scatter_state() {}

  // Updates taken so far (Adam's bias correction depends on it).
  int64_t step_count() const { return step_count_; }
  void set_step_count(int64_t steps) { step_count_ = steps; }

 protected:
  int64_t step_count_ = 0;
};

// The optimizer of `settings.type` for the parameters of `params` (finalized: its state is sized to
// the flat buffers and, for LARS and LAMB, cut at its parameters). `comm` is the group the run
// trains on: only L-BFGS with shard_history communicates (a copy is kept).
std::unique_ptr<Optimizer> make_optimizer(const OptimizerSettings& settings, const ParameterRegistry& params,
                                          const Communicator& comm);
// The same without MPI for everything but a sharded L-BFGS, which then uses MPI_COMM_WORLD.
std::unique_ptr<Optimizer> make_optimizer(const OptimizerSettings& settings, const ParameterRegistry& params);

// The concrete optimizers, for make_optimizer. `size` is the flat buffer length.
// Adam adds weight_decay * p to the gradient (L2); AdamW (decoupled) multiplies p by 1 - lr *
// weight_decay before the Adam update.
std::unique_ptr<Optimizer> make_adam(const OptimizerSettings& settings, int64_t size,
                                     bool decoupled_weight_decay);
std::unique_ptr<Optimizer> make_sgd(const OptimizerSettings& settings, int64_t size);
std::unique_ptr<Optimizer> make_lars(const OptimizerSettings& settings, const ParameterRegistry& params);
std::unique_ptr<Optimizer> make_lamb(const OptimizerSettings& settings, const ParameterRegistry& params);
// `comm` is used only with settings.lbfgs.shard_history (may be null otherwise).
std::unique_ptr<Optimizer> make_lbfgs(const OptimizerSettings& settings, const ParameterRegistry& params,
                                      const Communicator* comm);

}  // namespace pdegen

// The optimizer factory (the deck's optimizer.type to an implementation) and the default closure step.
#include "optim/optimizer.hpp"

#include <cmath>

#include "config/choices.hpp"
#include "optim/grad_clip.hpp"

namespace pdegen {

bool Evaluation::finite() const { return usable && std::isfinite(loss); }

StepResult Optimizer::step(ParameterRegistry& params, double lr, const LossClosure& closure,
                           double grad_clip) {
  StepResult result;
  const Evaluation e = closure();
  result.loss = e.loss;
  result.evaluations = 1;
  if (!e.finite()) {
    result.grad_norm = NAN;
    return result;
  }
  result.grad_norm = clip_grad_norm(params, grad_clip);
  step(params, lr);
  result.updated = true;
  return result;
}

namespace {

std::unique_ptr<Optimizer> make(const OptimizerSettings& settings, const ParameterRegistry& params,
                                const Communicator* comm) {
  PDEGEN_CHECK(params.finalized(), "optimizer created before the parameter registry was finalized");
  const int64_t size = params.flat_values().numel();
  switch (settings.type) {
    case OptimizerKind::adam:
      return make_adam(settings, size, false);
    case OptimizerKind::adamw:
      return make_adam(settings, size, true);
    case OptimizerKind::sgd:
      return make_sgd(settings, size);
    case OptimizerKind::lars:
      return make_lars(settings, params);
    case OptimizerKind::lamb:
      return make_lamb(settings, params);
    case OptimizerKind::lbfgs:
      return make_lbfgs(settings, params, comm);
  }
  PDEGEN_THROW("unhandled optimizer type {}", static_cast<int>(settings.type));
}

}  // namespace

std::unique_ptr<Optimizer> make_optimizer(const OptimizerSettings& settings, const ParameterRegistry& params,
                                          const Communicator& comm) {
  return make(settings, params, &comm);
}

std::unique_ptr<Optimizer> make_optimizer(const OptimizerSettings& settings,
                                          const ParameterRegistry& params) {
  if (settings.type == OptimizerKind::lbfgs && settings.lbfgs.shard_history) {
    const Communicator world;
    return make(settings, params, &world);
  }
  return make(settings, params, nullptr);
}

}  // namespace pdegen

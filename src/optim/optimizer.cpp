// The optimizer factory: the deck's optimizer.type to an implementation.
#include "optim/optimizer.hpp"

#include "config/choices.hpp"

namespace pdegen {

std::unique_ptr<Optimizer> make_optimizer(const OptimizerConfig& config, const ParameterRegistry& params) {
  PDEGEN_CHECK(params.finalized(), "optimizer created before the parameter registry was finalized");
  const int64_t size = params.flat_values().numel();
  switch (config.type) {
    case OptimizerKind::adam:
      return make_adam(config, size, false);
    case OptimizerKind::adamw:
      return make_adam(config, size, true);
    case OptimizerKind::sgd:
      return make_sgd(config, size);
    case OptimizerKind::lbfgs:
    case OptimizerKind::lars:
    case OptimizerKind::lamb:
      break;
  }
  throw UserError(fmt::format("optimizer.type '{}' is not built yet (coming with the optimizers issue)",
                              name_of(config.type)));
}

}  // namespace pdegen

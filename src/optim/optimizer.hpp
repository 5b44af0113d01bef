// Optimizers: one update of the parameters from the registry's flat gradient buffer, as a fused
// element-wise loop over the flat buffers (nn/parameter.hpp). The alignment padding between
// parameters has zero value and zero gradient, and every update here maps (0, 0, zero state) to
// zero, so the loops run over the whole buffer and the padding stays zero.
//
// The formulas are PyTorch's (torch.optim.Adam, AdamW, SGD), so a run can be compared with its
// PyTorch peer step by step. Updates are element-wise, so they are bit-identical for any number of
// threads and on every rank.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/deck.hpp"
#include "core/tensor.hpp"
#include "nn/parameter.hpp"

namespace pdegen {

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  virtual std::string_view name() const = 0;
  // One update of params.flat_values() from params.flat_grads() with learning rate `lr` (the
  // schedule's value for this step); then step_count() grows by one.
  virtual void step(ParameterRegistry& params, double lr) = 0;
  // Named state tensors (flat fp32, the registry's buffer length) for checkpoints: restoring them
  // and step_count() makes the next step bit-identical to the one an uninterrupted run takes.
  virtual std::vector<std::pair<std::string, Tensor*>> state() = 0;

  // Updates taken so far (Adam's bias correction depends on it).
  int64_t step_count() const { return step_count_; }
  void set_step_count(int64_t steps) { step_count_ = steps; }

 protected:
  int64_t step_count_ = 0;
};

// The optimizer of `config.type` for the parameters of `params` (finalized: its state is sized to
// the flat buffers). Throws UserError for types not built yet.
std::unique_ptr<Optimizer> make_optimizer(const OptimizerConfig& config, const ParameterRegistry& params);

// The concrete optimizers (adam.cpp, sgd.cpp), for make_optimizer. `size` is the flat buffer length.
// Adam adds weight_decay * p to the gradient (L2); AdamW (decoupled) multiplies p by 1 - lr *
// weight_decay before the Adam update.
std::unique_ptr<Optimizer> make_adam(const OptimizerConfig& config, int64_t size,
                                     bool decoupled_weight_decay);
std::unique_ptr<Optimizer> make_sgd(const OptimizerConfig& config, int64_t size);

}  // namespace pdegen

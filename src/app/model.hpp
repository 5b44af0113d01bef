// The generator and its parameters as one unit, and moving its state in and out of checkpoints:
// shared by train (save, restart) and predict (load).
#pragma once

#include <memory>
#include <string>

#include "io/checkpoint.hpp"
#include "nn/parameter.hpp"
#include "nn/unet.hpp"
#include "optim/optimizer.hpp"

namespace pdegen::app {

struct Model {
  ParameterRegistry registry;
  std::unique_ptr<UNet> net;
};

// The network of `plan` with its parameters initialised from `seed` (the same on every rank).
std::unique_ptr<Model> build_model(const UNetPlan& plan, uint64_t seed);

// Copies parameters and buffers (batch-norm running statistics) from a checkpoint, after checking
// that it was written by the same network (UserError naming `path` otherwise); and the optimizer
// state, when given.
void restore_model(Model& model, const CheckpointData& data, const std::string& path, Optimizer* optimizer);

// A checkpoint of the model (and optimizer) after `step` completed steps.
CheckpointData snapshot(Model& model, Optimizer* optimizer, int64_t step, uint64_t seed, int64_t next_sample,
                        const std::string& deck_yaml);

}  // namespace pdegen::app

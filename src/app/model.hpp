// The generator and its parameters as one unit, and moving its state in and out of checkpoints:
// shared by train (save, restart) and predict (load).
#pragma once

#include <memory>
#include <string>

#include "config/choices.hpp"
#include "core/parameter.hpp"
#include "io/checkpoint.hpp"
#include "nn/network.hpp"
#include "optim/optimizer.hpp"

namespace pdegen::app {

struct Model {
  ParameterRegistry registry;    // the network's parameters, on the run's device
  std::unique_ptr<Network> net;  // the generator, any family (nn/network_factory.hpp)
  // On a GPU run: the same parameters (same names, shapes and offsets) in host memory. These fp32
  // master weights are what the optimizers and checkpoints work on, so every optimizer (L-BFGS's
  // line search included) runs unchanged on either backend; the device copy is refreshed with
  // push_values() before the network runs, and the gradients, once NCCL has summed them on the
  // device, come back with pull_grads(). Costs two copies of the parameter buffer per evaluation
  // (docs/cuda.md).
  std::unique_ptr<ParameterRegistry> host;

  ParameterRegistry& master() { return host ? *host : registry; }
  void push_values();  // master values -> device (no-op on the CPU)
  void pull_grads();   // device gradients -> master (no-op on the CPU)
};

// The network of `plan` with its parameters initialised from `seed` (the same on every rank and
// backend), on `device`.
std::unique_ptr<Model> build_model(const NetworkPlan& plan, uint64_t seed, Device device = Device::cpu);

// Refuses (UserError naming `precision`) activations of a type that `device` here cannot run faster
// than fp32: bf16 on a CPU without AVX512-BF16 or AMX, where oneDNN falls back to slow kernels.
void check_precision_runs_here(DType precision, Device device);

// The deck's cpu.conv_algorithm for every convolution this process builds on the CPU.
void use_conv_algorithm(ConvAlgorithmKind kind);

// Copies parameters and buffers (batch-norm running statistics) from a checkpoint, after checking
// that it was written by the same network (UserError naming `path` otherwise); and the optimizer
// state, when given.
void restore_model(Model& model, const CheckpointData& data, const std::string& path, Optimizer* optimizer);

// `from`'s parameters and buffers into `to`, a model of the same network planned for another grid
// (tiled inference runs the generator on tile windows).
void copy_model_state(Model& from, Model& to);

// A checkpoint of the model (and optimizer) after `step` completed steps.
CheckpointData snapshot(Model& model, Optimizer* optimizer, int64_t step, uint64_t seed, int64_t next_sample,
                        const std::string& deck_yaml);

}  // namespace pdegen::app

// The seam between the network and what it is trained to minimise. An Objective supplies the
// network inputs of a set of global sample indices and turns the network's output for them into a
// loss and its gradient. The physics objective takes both from a Problem (sampled coefficient
// fields; lift + FEM loss); the data objective (data_objective.hpp) reads inputs and targets from a
// dataset, alone or added to the physics loss. The Trainer sees only this interface.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.hpp"
#include "io/checkpoint.hpp"
#include "physics/problem.hpp"

namespace pdegen::app {

class Objective {
 public:
  virtual ~Objective() = default;

  // The network inputs of the samples `global_indices` (plain fp32 on the host), written into
  // `input` (reused when it already has the right shape). What else the loss needs of these
  // samples (a dataset's targets) is kept for the next loss().
  virtual void inputs(uint64_t seed, const std::vector<uint64_t>& global_indices, Tensor& input) = 0;

  // The SUM over the samples of the loss of `output` (the network's fp32 output for `input`, both on
  // the run's device), and d_output = grad_scale * d(sum)/d(output).
  virtual double loss(const Tensor& output, const Tensor& input, double grad_scale, Tensor& d_output) = 0;

  // Objectives that read ahead: how many micro-batches, and the samples of one that inputs() will
  // be asked for later.
  virtual int read_ahead() const { return 0; }
  virtual void will_need(const std::vector<uint64_t>& /*global_indices*/) {}

  // State a checkpoint records (`next_sample`: where the run's sample stream goes on), and the check
  // of a checkpoint's against this run's before it restarts (throws UserError naming `file`).
  virtual void add_state(int64_t /*next_sample*/,
                         std::vector<std::pair<std::string, double>>& /*scalars*/) const {}
  virtual void check_state(const CheckpointData& /*data*/, const std::string& /*file*/) const {}
};

// Data-free training: u = lift(output), loss = the problem's physics loss of u.
class PhysicsObjective final : public Objective {
 public:
  explicit PhysicsObjective(const Problem& problem) : problem_(problem) {}
  void inputs(uint64_t seed, const std::vector<uint64_t>& global_indices, Tensor& input) override;
  double loss(const Tensor& output, const Tensor& input, double grad_scale, Tensor& d_output) override;

 private:
  const Problem& problem_;
};

}  // namespace pdegen::app

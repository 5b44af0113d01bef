// The seam between the network and what it is trained to minimise. An Objective supplies the
// network inputs of a set of global sample indices and turns the network's output for them into a
// loss and its gradient. The physics objective takes both from a Problem (sampled coefficient
// fields; lift + FEM loss); a supervised objective would read inputs and targets from a dataset,
// a hybrid one add the two losses. The Trainer sees only this interface.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.hpp"
#include "physics/problem.hpp"

namespace pdegen::app {

class Objective {
 public:
  virtual ~Objective() = default;

  // The network inputs of the samples `global_indices` (plain fp32 on the host), written into
  // `input` (reused when it already has the right shape).
  virtual void inputs(uint64_t seed, const std::vector<uint64_t>& global_indices, Tensor& input) const = 0;

  // The SUM over the samples of the loss of `output` (the network's fp32 output for `input`, both on
  // the run's device), and d_output = grad_scale * d(sum)/d(output).
  virtual double loss(const Tensor& output, const Tensor& input, double grad_scale,
                      Tensor& d_output) const = 0;
};

// Data-free training: u = lift(output), loss = the problem's physics loss of u.
class PhysicsObjective final : public Objective {
 public:
  explicit PhysicsObjective(const Problem& problem) : problem_(problem) {}
  void inputs(uint64_t seed, const std::vector<uint64_t>& global_indices, Tensor& input) const override;
  double loss(const Tensor& output, const Tensor& input, double grad_scale, Tensor& d_output) const override;

 private:
  const Problem& problem_;
};

}  // namespace pdegen::app

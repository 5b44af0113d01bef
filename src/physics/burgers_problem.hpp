// burgers1d (u_t + u u_x = nu u_xx on [0, 1] x [0, T], u(x, 0) = b(x), u(0, t) = 0, u_x(1, t) = 0
// when nu > 0) behind the Problem interface. Samples: the initial condition broadcast along t
// (BurgersSampler); lift: the initial and inflow values imposed exactly (or left to the penalty);
// loss: the space-time Galerkin residual or the strong-form least squares (BurgersLoss); reference:
// the finite-volume solver on a finer grid, sampled at the nodes (burgers_reference.hpp).
#pragma once

#include "physics/burgers_lift.hpp"
#include "physics/burgers_loss.hpp"
#include "physics/burgers_sampler.hpp"
#include "physics/problem.hpp"

namespace pdegen {

class BurgersProblem final : public Problem {
 public:
  explicit BurgersProblem(const ProblemConfig& config);

  std::string_view name() const override { return "burgers1d"; }
  Shape sample_shape() const override { return Shape{1, nt_, nx_}; }
  Shape input_shape() const override { return Shape{BurgersSampler::channels, nt_, nx_}; }
  void sample(uint64_t seed, const std::vector<uint64_t>& global_indices, Tensor& input) const override {
    sampler_.sample(seed, global_indices, input);
  }
  // exact: u = v with row t = 0 set to b (the input's channel 0) and column x = 0 to 0; penalty: u = v.
  Tensor lift(const Tensor& v, const Tensor& input) const override;
  Tensor lift_backward(const Tensor& du) const override;
  double loss(const Tensor& u, const Tensor& input, double grad_scale, Tensor* du,
              std::vector<double>* per_sample) const override {
    return loss_.evaluate(u, input, grad_scale, du, per_sample);
  }
  Tensor reference(const Tensor& input, ReferenceReport* report) const override;
  std::string input_name() const override { return "u0"; }
  // x first, then t.
  std::vector<double> origin() const override { return {0.0, 0.0}; }
  std::vector<double> spacing() const override {
    return {1.0 / (nx_ - 1), config_.burgers.t_final / (nt_ - 1)};
  }

 private:
  bool exact() const { return config_.burgers.boundary == BoundaryTreatment::exact; }

  ProblemConfig config_;
  int nx_, nt_;
  BurgersSampler sampler_;
  BurgersLoss loss_;
  BurgersLift lift_;
};

}  // namespace pdegen

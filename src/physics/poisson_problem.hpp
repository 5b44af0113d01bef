// poisson2d and poisson3d (steady diffusion with a random log-normal coefficient on the unit square
// or cube) behind the Problem interface: one class, the space dimension a template parameter.
// Samples: the KL sampler; lift: u = 1 at x = 0, u = 0 at x = 1; loss: the Q1 energy or residual;
// reference: the multigrid-preconditioned CG solver of the same discrete system.
#pragma once

#include "physics/boundary_lift.hpp"
#include "physics/kl_sampler.hpp"
#include "physics/poisson_loss.hpp"
#include "physics/problem.hpp"

namespace pdegen {

template <int Dim>
class PoissonProblem final : public Problem {
 public:
  PoissonProblem(const ProblemConfig& config, double solver_tolerance);

  std::string_view name() const override { return Dim == 2 ? "poisson2d" : "poisson3d"; }
  Shape sample_shape() const override;
  void sample(uint64_t seed, const std::vector<uint64_t>& global_indices, Tensor& input) const override {
    sampler_.sample(seed, global_indices, input);
  }
  Tensor lift(const Tensor& v, const Tensor& /*input*/) const override { return lift_.forward(v); }
  Tensor lift_backward(const Tensor& du) const override { return lift_.backward(du); }
  // The KL expansion evaluates any box, and the lift is node-wise (it reads no input).
  bool has_boxes() const override { return true; }
  void sample_box(uint64_t seed, uint64_t global_index, const GridBox& box, Tensor& input) const override;
  Tensor lift_box(const Tensor& v, const Tensor& input, const GridBox& box) const override;
  double loss(const Tensor& u, const Tensor& input, double grad_scale, Tensor* du,
              std::vector<double>* per_sample) const override {
    return loss_.evaluate(u, input, grad_scale, du, per_sample);
  }
  Tensor reference(const Tensor& input, ReferenceReport* report) const override;
  std::string input_name() const override { return "log_nu"; }
  std::vector<double> origin() const override { return std::vector<double>(Dim, 0.0); }
  std::vector<double> spacing() const override {
    return std::vector<double>(Dim, 1.0 / (config_.resolution - 1));
  }

 private:
  ProblemConfig config_;
  double tolerance_;
  KlSampler<Dim> sampler_;
  BoundaryLift lift_;
  PoissonLoss loss_;
};

extern template class PoissonProblem<2>;
extern template class PoissonProblem<3>;

}  // namespace pdegen

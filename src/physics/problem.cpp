// The PDE registry (see problem.hpp): poisson2d now; poisson3d and burgers1d arrive with their issues.
#include "physics/problem.hpp"

#include <cmath>

#include "physics/boundary_lift.hpp"
#include "physics/kl_sampler.hpp"
#include "physics/poisson_loss.hpp"
#include "physics/reference_solver.hpp"

namespace pdegen {

namespace {

class Poisson2DProblem final : public PdeProblem {
 public:
  explicit Poisson2DProblem(const ProblemConfig& config)
      : config_(config), sampler_(config.poisson, config.resolution), loss_(config) {}

  std::string_view name() const override { return "poisson2d"; }
  Shape sample_shape() const override { return Shape{1, config_.resolution, config_.resolution}; }

  void sample(uint64_t seed, const std::vector<uint64_t>& global_indices, Tensor& input) const override {
    sampler_.sample(seed, global_indices, input);
  }
  Tensor lift(const Tensor& v) const override { return lift_.forward(v); }
  Tensor lift_backward(const Tensor& du) const override { return lift_.backward(du); }
  double loss(const Tensor& u, const Tensor& input, double grad_scale, Tensor* du,
              std::vector<double>* per_sample) const override {
    return loss_.evaluate(u, input, grad_scale, du, per_sample);
  }
  Tensor reference_solution(const Tensor& input, double tolerance,
                            std::vector<int>* iterations) const override {
    physics::SolverOptions options;
    options.tolerance = tolerance;
    Tensor u = Tensor::empty(input.shape());
    const auto reports = physics::solve_poisson2d_batch(input, config_.poisson.source, u, options);
    if (iterations) {
      iterations->clear();
      for (const auto& r : reports) iterations->push_back(r.iterations);
    }
    return u;
  }
  std::vector<double> origin() const override { return {0.0, 0.0}; }
  std::vector<double> spacing() const override {
    const double h = 1.0 / (config_.resolution - 1);
    return {h, h};
  }
  std::string input_name() const override { return "log_nu"; }

 private:
  ProblemConfig config_;
  KlSampler2D sampler_;
  BoundaryLift2D lift_;
  PoissonLoss2D loss_;
};

}  // namespace

std::unique_ptr<PdeProblem> make_problem(const ProblemConfig& problem) {
  switch (problem.pde) {
    case PdeKind::poisson2d:
      return std::make_unique<Poisson2DProblem>(problem);
    case PdeKind::poisson3d:
      throw NotImplemented(
          "problem.pde 'poisson3d' is not built yet (coming with the 3D issue); the deck is valid");
    case PdeKind::burgers1d:
      throw NotImplemented(
          "problem.pde 'burgers1d' is not built yet (coming with the Burgers issue); the deck is valid");
  }
  throw NotImplemented("unknown problem.pde");
}

Tensor difference(const Tensor& a, const Tensor& b) {
  PDEGEN_CHECK(a.shape() == b.shape() && a.is_plain() && b.is_plain(), "difference of {} and {}",
               a.describe(), b.describe());
  Tensor d = Tensor::empty(a.shape());
  const float *pa = a.data<float>(), *pb = b.data<float>();
  float* pd = d.data<float>();
  for (int64_t i = 0; i < d.numel(); ++i) pd[i] = pa[i] - pb[i];
  return d;
}

std::vector<double> relative_l2(const Tensor& a, const Tensor& reference) {
  PDEGEN_CHECK(a.shape() == reference.shape() && a.is_plain() && reference.is_plain(),
               "rel_l2 of {} against {}", a.describe(), reference.describe());
  const int64_t b = a.dim(0), per = b ? a.numel() / b : 0;
  std::vector<double> out(static_cast<size_t>(b));
  const float *pa = a.data<float>(), *pr = reference.data<float>();
  for (int64_t s = 0; s < b; ++s) {
    double num = 0, den = 0;
    for (int64_t i = s * per; i < (s + 1) * per; ++i) {
      const double d = static_cast<double>(pa[i]) - pr[i];
      num += d * d;
      den += static_cast<double>(pr[i]) * pr[i];
    }
    out[static_cast<size_t>(s)] = std::sqrt(num / den);
  }
  return out;
}

}  // namespace pdegen

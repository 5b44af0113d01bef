// poisson2d and poisson3d behind the Problem interface (see poisson_problem.hpp).
#include "physics/poisson_problem.hpp"

#include <fmt/format.h>

#include "core/timer.hpp"
#include "physics/reference_solver.hpp"

namespace pdegen {

template <int Dim>
PoissonProblem<Dim>::PoissonProblem(const ProblemConfig& config, double solver_tolerance)
    : config_(config),
      tolerance_(solver_tolerance),
      sampler_(config.poisson, config.resolution),
      loss_(config.loss, config.poisson.source) {}

template <int Dim>
Shape PoissonProblem<Dim>::sample_shape() const {
  Shape s{1};
  for (int d = 0; d < Dim; ++d) s.push_back(config_.resolution);
  return s;
}

template <int Dim>
Tensor PoissonProblem<Dim>::reference(const Tensor& input, ReferenceReport* report) const {
  Timer timer;
  physics::SolverOptions options;
  options.tolerance = tolerance_;
  Tensor u = Tensor::empty(input.shape());
  const auto solves = physics::solve_poisson_batch(input, config_.poisson.source, u, options);
  if (report != nullptr) {
    report->method = fmt::format("multigrid-preconditioned CG to relative residual {:.0e}", tolerance_);
    report->iterations.clear();
    for (const auto& r : solves) report->iterations.push_back(r.iterations);
    report->seconds = timer.seconds();
  }
  return u;
}

template class PoissonProblem<2>;
template class PoissonProblem<3>;

}  // namespace pdegen

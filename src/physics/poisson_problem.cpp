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

template <int Dim>
void PoissonProblem<Dim>::sample_box(uint64_t seed, uint64_t global_index, const GridBox& box,
                                     Tensor& input) const {
  Shape shape{1, 1};
  for (int64_t c : box.count) shape.push_back(c);
  PDEGEN_CHECK(input.shape() == shape && input.is_plain() && input.dtype() == DType::f32 &&
                   input.device() == Device::cpu,
               "{} box input must be a plain fp32 host {}, got {}", name(), shape.str(), input.describe());
  sampler_.sample_box(seed, global_index, box, input.data<float>());
}

template <int Dim>
Tensor PoissonProblem<Dim>::lift_box(const Tensor& v, const Tensor& /*input*/, const GridBox& box) const {
  const int64_t x0 = box.first.back(), nx = box.count.back();
  PDEGEN_CHECK(box.dims() == Dim && v.dim(v.rank() - 1) == nx, "{} lift of box with {} x nodes, v is {}",
               name(), nx, v.describe());
  return lift_.forward_box(v, x0 == 0, x0 + nx == config_.resolution);
}

template class PoissonProblem<2>;
template class PoissonProblem<3>;

}  // namespace pdegen

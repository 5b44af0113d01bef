// burgers1d behind the Problem interface (see burgers_problem.hpp).
#include "physics/burgers_problem.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "core/timer.hpp"
#include "physics/burgers_reference.hpp"

namespace pdegen {

BurgersProblem::BurgersProblem(const ProblemConfig& config)
    : config_(config),
      nx_(config.resolution),
      nt_(config.burgers.time_resolution > 0 ? config.burgers.time_resolution : config.resolution),
      sampler_(config.burgers, nx_, nt_),
      loss_(config.loss, config.burgers) {}

namespace {
// b between the nodes, for the solver's finer cells: cubic Lagrange through the four nearest nodes
// (one-sided at the ends). The input holds b at the nodes only; the error, O(h^4), is about 1e-5 of
// b at 128 nodes and c = 4, far below any error the reference is used to measure.
double interpolate_nodes(const float* b, int nx, double x) {
  const int degree = std::min(3, nx - 1);
  const double s = x * (nx - 1);
  const int first = std::clamp(static_cast<int>(std::floor(s)) - (degree - 1) / 2, 0, nx - 1 - degree);
  double value = 0;
  for (int m = 0; m <= degree; ++m) {
    double weight = 1;
    for (int k = 0; k <= degree; ++k)
      if (k != m) weight *= (s - (first + k)) / static_cast<double>(m - k);
    value += weight * b[first + m];
  }
  return value;
}

void check_field(const Tensor& t, const Shape& batch_sample, const char* what) {
  const bool fits = t.rank() == 4 && t.dim(1) == batch_sample[0] && t.dim(2) == batch_sample[1] &&
                    t.dim(3) == batch_sample[2] && t.is_plain() && t.dtype() == DType::f32 &&
                    t.device() == Device::cpu;
  PDEGEN_CHECK(fits, "burgers1d {}: {} (expected plain fp32 [b, {}, {}, {}] on the CPU)", what, t.describe(),
               batch_sample[0], batch_sample[1], batch_sample[2]);
}
}  // namespace

Tensor BurgersProblem::lift(const Tensor& v, const Tensor& input) const {
  return exact() ? lift_.forward(v, input) : v.clone();
}

Tensor BurgersProblem::lift_backward(const Tensor& du) const {
  return exact() ? lift_.backward(du) : du.clone();
}

Tensor BurgersProblem::reference(const Tensor& input, ReferenceReport* report) const {
  check_field(input, input_shape(), "reference input");
  const Timer timer;
  physics::BurgersFvSettings fv;
  fv.viscosity = config_.burgers.viscosity;
  fv.t_final = config_.burgers.t_final;
  // The defaults' boundaries are this problem's: u = 0 at the inflow, zero gradient at the outflow.
  Tensor u = Tensor::empty(batch_shape(input.dim(0)));
  const int64_t per = static_cast<int64_t>(nt_) * nx_;
  std::vector<int> steps;
  for (int64_t s = 0; s < input.dim(0); ++s) {
    const float* b = input.data<float>() + s * BurgersSampler::channels * per;
    const auto initial = [&](double x) { return interpolate_nodes(b, nx_, x); };
    physics::BurgersFvReport r;
    const std::vector<double> sol = physics::solve_burgers_fv(initial, nx_, nt_, fv, &r);
    float* out = u.data<float>() + s * per;
    for (int64_t i = 0; i < per; ++i) out[i] = static_cast<float>(sol[static_cast<size_t>(i)]);
    steps.push_back(static_cast<int>(r.steps));
  }
  if (report != nullptr) {
    report->method =
        fmt::format("finite volumes (Godunov flux, MUSCL-MC, SSP-RK2{}), {} cells per network cell",
                    fv.viscosity > 0 ? ", Crank-Nicolson diffusion" : "", fv.refinement);
    report->iterations = steps;
    report->seconds = timer.seconds();
  }
  return u;
}

}  // namespace pdegen

// The problem factory and the helpers every problem shares (see problem.hpp).
#include "physics/problem.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "physics/burgers_problem.hpp"
#include "physics/poisson_inverse_problem.hpp"
#include "physics/poisson_problem.hpp"

namespace pdegen {

Shape Problem::batch_shape(int64_t n) const {
  Shape s{n};
  const Shape per = sample_shape();
  for (int i = 0; i < per.rank(); ++i) s.push_back(per[i]);
  return s;
}

Shape Problem::input_batch_shape(int64_t n) const {
  Shape s{n};
  const Shape per = input_shape();
  for (int i = 0; i < per.rank(); ++i) s.push_back(per[i]);
  return s;
}

void Problem::sample_box(uint64_t, uint64_t, const GridBox&, Tensor&) const {
  throw NotImplemented(fmt::format("{} cannot sample a box of its grid (tiled inference)", name()));
}

Tensor Problem::lift_box(const Tensor&, const Tensor&, const GridBox&) const {
  throw NotImplemented(fmt::format("{} cannot lift a box of its grid (tiled inference)", name()));
}

void Problem::input_from_data(const Tensor& field, const Tensor& /*target*/, uint64_t seed,
                              const std::vector<uint64_t>& global_indices, Tensor& input) const {
  const int64_t b = field.dim(0), channels = input_shape()[0], n = field.numel() / std::max<int64_t>(b, 1);
  if (channels > 1)
    sample(seed, global_indices, input);  // the coordinate channels; channel 0 is replaced
  else if (!input.defined() || input.shape() != input_batch_shape(b))
    input = Tensor::empty(input_batch_shape(b));
  for (int64_t s = 0; s < b; ++s)
    std::memcpy(input.data<float>() + s * channels * n, field.data<float>() + s * n,
                static_cast<size_t>(n) * sizeof(float));
}

std::vector<double> Problem::error(const Tensor& u, const Tensor& reference) const {
  return relative_l2(u, reference);
}

std::unique_ptr<Problem> make_problem(const ProblemConfig& problem, const EvaluationConfig& evaluation) {
  switch (problem.pde) {
    case PdeKind::poisson2d:
      if (problem.is_inverse())
        return std::make_unique<PoissonInverseProblem<2>>(problem, evaluation.solver_tolerance);
      return std::make_unique<PoissonProblem<2>>(problem, evaluation.solver_tolerance);
    case PdeKind::poisson3d:
      if (problem.is_inverse())
        return std::make_unique<PoissonInverseProblem<3>>(problem, evaluation.solver_tolerance);
      return std::make_unique<PoissonProblem<3>>(problem, evaluation.solver_tolerance);
    case PdeKind::burgers1d:
      return std::make_unique<BurgersProblem>(problem);
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

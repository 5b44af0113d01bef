// The physics objective (see objective.hpp).
#include "app/objective.hpp"

namespace pdegen::app {

void PhysicsObjective::inputs(uint64_t seed, const std::vector<uint64_t>& global_indices, Tensor& input) {
  problem_.sample(seed, global_indices, input);
}

double PhysicsObjective::loss(const Tensor& output, const Tensor& input, double grad_scale,
                              Tensor& d_output) {
  const Tensor u = problem_.lift(output, input);
  Tensor du;
  const double sum = problem_.loss(u, input, grad_scale, &du, nullptr);
  d_output = problem_.lift_backward(du);
  return sum;
}

}  // namespace pdegen::app

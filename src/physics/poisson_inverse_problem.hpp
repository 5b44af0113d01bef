// The inverse map of poisson2d and poisson3d (problem.map: inverse) behind the Problem interface: the
// network reads an observed solution u and log nu measured on the inflow boundary x = 0, and returns
// log nu everywhere. Samples: the forward problem's coefficient, its reference solution u (multigrid
// CG), and the pin; lift: log nu on the x = 0 nodes set to the measured values (u determines nu
// along the flow from there, docs/theory.md "The inverse map"), the network's output added to the
// inflow value of each x line elsewhere; loss: the forward problem's residual
// with the predicted coefficient (physics/inverse_residual.hpp), no coefficient data; reference: the
// sampled log nu itself. Input channels: [u, pin], pin = log nu on the x = 0 nodes, 0 elsewhere.
#pragma once

#include "physics/poisson_problem.hpp"

namespace pdegen {

template <int Dim>
class PoissonInverseProblem final : public Problem {
 public:
  PoissonInverseProblem(const ProblemConfig& config, double solver_tolerance);

  std::string_view name() const override { return Dim == 2 ? "poisson2d" : "poisson3d"; }
  Shape sample_shape() const override { return forward_.sample_shape(); }
  Shape input_shape() const override;
  void sample(uint64_t seed, const std::vector<uint64_t>& global_indices, Tensor& input) const override;
  Tensor lift(const Tensor& v, const Tensor& input) const override;
  Tensor lift_backward(const Tensor& ds) const override;
  double loss(const Tensor& s, const Tensor& input, double grad_scale, Tensor* ds,
              std::vector<double>* per_sample) const override;
  Tensor reference(const Tensor& input, ReferenceReport* report) const override;
  Tensor reference_of(uint64_t seed, const std::vector<uint64_t>& global_indices, const Tensor& input,
                      ReferenceReport* report) const override;
  void input_from_data(const Tensor& field, const Tensor& target, uint64_t seed,
                       const std::vector<uint64_t>& global_indices, Tensor& input) const override;
  DataFields data_fields() const override { return {"u_ref", "log_nu"}; }
  std::string input_name() const override { return "u_obs"; }
  std::string output_name() const override { return "log_nu"; }
  std::vector<double> origin() const override { return forward_.origin(); }
  std::vector<double> spacing() const override { return forward_.spacing(); }

 private:
  // input = [u, pin(log_nu)] for plain fp32 host tensors.
  static void assemble_input(const Tensor& u, const Tensor& log_nu, Tensor& input);
  ProblemConfig config_;
  PoissonProblem<Dim> forward_;
};

extern template class PoissonInverseProblem<2>;
extern template class PoissonInverseProblem<3>;

}  // namespace pdegen

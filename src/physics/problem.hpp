// The PDE registry: what the trainer, `solve` and `predict` need from a problem, behind one
// interface (samples by global index, the exact boundary lift, the physics loss, the reference
// solver and the grid for output files). make_problem() is the factory on `problem.pde`.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "config/deck.hpp"
#include "core/tensor.hpp"

namespace pdegen {

// Global sample indices: training sample p of step s is s * B + p; evaluation sample e is
// eval_index_base + e, so the two sets never meet (PHYSICS.md, shared conventions).
inline constexpr uint64_t eval_index_base = uint64_t{1} << 40;

class PdeProblem {
 public:
  virtual ~PdeProblem() = default;
  virtual std::string_view name() const = 0;
  // Per-sample network input/output shape, [1, Ny, Nx] etc.
  virtual Shape sample_shape() const = 0;
  // [n, sample_shape()...]: a batch's shape (n = 0 for a rank that holds no samples but must still
  // describe the fields it writes collectively).
  Shape batch_shape(int64_t n) const {
    Shape s{n};
    for (int i = 0; i < sample_shape().rank(); ++i) s.push_back(sample_shape()[i]);
    return s;
  }

  // The network input of each global index (plain fp32 [b, 1, ...]), written into `input`.
  virtual void sample(uint64_t seed, const std::vector<uint64_t>& global_indices, Tensor& input) const = 0;
  // u = lift(v): the network output with the Dirichlet data imposed exactly; and its adjoint.
  virtual Tensor lift(const Tensor& v) const = 0;
  virtual Tensor lift_backward(const Tensor& du) const = 0;
  // Sum over the samples of the physics loss of u for the inputs; with `du`, du = grad_scale * dJ/du.
  virtual double loss(const Tensor& u, const Tensor& input, double grad_scale, Tensor* du,
                      std::vector<double>* per_sample) const = 0;
  // The reference solution of each sample of `input` (plain fp32 [b, 1, ...] in, same shape out),
  // solved to `tolerance`; `iterations` (if given) receives the solver's iteration counts.
  virtual Tensor reference_solution(const Tensor& input, double tolerance,
                                    std::vector<int>* iterations) const = 0;

  // Grid geometry for the fields file: origin and spacing, x first.
  virtual std::vector<double> origin() const = 0;
  virtual std::vector<double> spacing() const = 0;
  // Name of the network input field in output files ("log_nu").
  virtual std::string input_name() const = 0;
};

// Throws UserError for PDEs whose issue has not landed yet, saying so.
std::unique_ptr<PdeProblem> make_problem(const ProblemConfig& problem);

// a - b, element by element (the error field of a prediction), for two plain fp32 tensors.
Tensor difference(const Tensor& a, const Tensor& b);

// rel_l2 = ||a - b|| / ||b|| per sample of two [b, 1, ...] fp32 tensors, in double.
std::vector<double> relative_l2(const Tensor& a, const Tensor& reference);

}  // namespace pdegen

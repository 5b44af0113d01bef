// What the trainer, `solve`, `predict` and `check` know of a PDE: one interface, and the factory on
// `problem.pde`. A problem supplies its samples by global index, the exact boundary lift and its
// adjoint, the physics loss with its gradient, the reference solutions of evaluation samples
// (whatever solver suits it: multigrid CG, time marching), the names and grid of the fields it
// writes, and its error metric. Adding a PDE is a new class behind this interface and a factory
// entry; nothing else in the program names a PDE.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/deck.hpp"
#include "core/grid_box.hpp"
#include "core/tensor.hpp"

namespace pdegen {

// Global sample indices: training sample p of step s is s * B + p; evaluation sample e is
// eval_index_base + e, prediction sample e predict_index_base + e, dataset sample e (pdegen dataset)
// dataset_index_base + e, so the sets never meet.
inline constexpr uint64_t eval_index_base = uint64_t{1} << 40;
inline constexpr uint64_t predict_index_base = uint64_t{1} << 41;
inline constexpr uint64_t dataset_index_base = uint64_t{1} << 42;

// The datasets (under /fields) a data objective reads by default: the network input's field and the
// target's.
struct DataFields {
  std::string input, target;
};

// What a batch of reference solves did, for logs and summaries.
struct ReferenceReport {
  std::string method;           // e.g. "multigrid-preconditioned CG to relative residual 1e-10"
  std::vector<int> iterations;  // per sample (solver iterations or time steps)
  double seconds = 0;
};

class Problem {
 public:
  virtual ~Problem() = default;
  virtual std::string_view name() const = 0;
  // Per-sample network input and output shape: [1, Ny, Nx], [1, Nz, Ny, Nx], [1, Nt, Nx].
  virtual Shape sample_shape() const = 0;
  // [n, sample_shape()...]: a batch's shape (n = 0 for a rank that holds no samples but must still
  // describe the fields it writes collectively).
  Shape batch_shape(int64_t n) const;
  // The network input of one sample, when it has more channels than the solution (coordinates);
  // its first channel is the field written as input_name().
  virtual Shape input_shape() const { return sample_shape(); }
  Shape input_batch_shape(int64_t n) const;

  // The network input of each global index (plain fp32 [b, ...] on the host), written into `input`
  // (reused when it already has the right shape). A sample depends only on (seed, index).
  virtual void sample(uint64_t seed, const std::vector<uint64_t>& global_indices, Tensor& input) const = 0;
  // u = lift(v, input): the network output with the boundary data imposed exactly (data that may
  // come from the sample's input, e.g. an initial condition); and its adjoint, which the input does
  // not enter (the lift is affine in v).
  virtual Tensor lift(const Tensor& v, const Tensor& input) const = 0;
  virtual Tensor lift_backward(const Tensor& du) const = 0;

  // Tiled inference: one sample's input on a box of the grid, and the lift of a box of the network
  // output, each equal to that box of the whole domain's (`input` of sample_box: a plain fp32 host
  // tensor [1, c, box...] to fill; `v`, `input`: host [1, 1, box...] and [1, c, box...]). Problems
  // whose input or lift cannot be cut into boxes say false, and tiling refuses them.
  virtual bool has_boxes() const { return false; }
  virtual void sample_box(uint64_t seed, uint64_t global_index, const GridBox& box, Tensor& input) const;
  virtual Tensor lift_box(const Tensor& v, const Tensor& input, const GridBox& box) const;
  // Sum over the samples of the physics loss of u for the inputs; with `du`, du = grad_scale * dJ/du;
  // with `per_sample`, each sample's loss.
  virtual double loss(const Tensor& u, const Tensor& input, double grad_scale, Tensor* du,
                      std::vector<double>* per_sample) const = 0;
  // The reference solution of each sample of `input` (plain fp32 host tensors of the batch shape),
  // by the problem's own classical solver to the accuracy its settings ask for.
  virtual Tensor reference(const Tensor& input, ReferenceReport* report) const = 0;
  // The reference of the samples `global_indices` whose inputs are `input`: reference(input), unless
  // the problem's truth is not a function of the input alone (the inverse map's coefficient).
  virtual Tensor reference_of(uint64_t /*seed*/, const std::vector<uint64_t>& /*global_indices*/,
                              const Tensor& input, ReferenceReport* report) const {
    return reference(input, report);
  }

  // Training from data: the network input of dataset samples from their stored input field (`field`,
  // plain fp32 [b, 1, grid...]) and target (the same shape): `field` as channel 0, the other channels
  // (coordinates) as sample() makes them for `global_indices`. DataFields: the default datasets.
  virtual void input_from_data(const Tensor& field, const Tensor& target, uint64_t seed,
                               const std::vector<uint64_t>& global_indices, Tensor& input) const;
  virtual DataFields data_fields() const { return {input_name(), "u_ref"}; }

  // Output files: the network input's field name ("log_nu"), and the grid (node 0 and the node
  // spacing, x first).
  virtual std::string input_name() const = 0;
  // The network output's field ("u"; "<name>_pred" and "<name>_ref" in the fields files).
  virtual std::string output_name() const { return "u"; }
  virtual std::vector<double> origin() const = 0;
  virtual std::vector<double> spacing() const = 0;
  // The error of each sample of u against the reference (default: relative L2 over all nodes).
  virtual std::vector<double> error(const Tensor& u, const Tensor& reference) const;
};

// The problem of `problem.pde`, its reference solves held to `evaluation.solver_tolerance`. Throws
// UserError for PDEs that are not built yet, saying so.
std::unique_ptr<Problem> make_problem(const ProblemConfig& problem, const EvaluationConfig& evaluation);

// a - b, element by element (the error field of a prediction), for two plain fp32 tensors.
Tensor difference(const Tensor& a, const Tensor& b);

// rel_l2 = ||a - b|| / ||b|| per sample of two [b, ...] fp32 tensors, in double.
std::vector<double> relative_l2(const Tensor& a, const Tensor& reference);

}  // namespace pdegen

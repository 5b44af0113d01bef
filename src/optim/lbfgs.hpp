// L-BFGS (Nocedal & Wright, Numerical Optimization, ch. 7), closure-based like torch.optim.LBFGS:
// one step() runs up to lbfgs.max_iterations quasi-Newton iterations with lbfgs.max_evaluations
// closure calls, each iteration a line search (strong Wolfe, or Armijo backtracking) along the
// L-BFGS direction with `lr` as the first trial step (scaled by min(1, 1/|g|_1) on the very first
// iteration). Curvature pairs (s, y) with s.y <= curvature_eps * y.y are skipped; with damping,
// Powell's damping (B0 = I / H_diag) first moves y towards s so that s.y >= 0.2 s.B0.s.
//
// Distributed: the closure's loss and gradient are global and identical on every rank, and every
// decision (line search, skipping, stopping) depends only on them and on dot products that are
// identical on every rank, so ranks never fall out of step. The direction is computed in the
// "vector-free" form (Chen, Wang, Zhou & Gao 2014): the two-loop recursion runs on the Gram matrix
// of the basis {s_i, y_i, g} and gives d as a linear combination of the basis. With
// lbfgs.shard_history each rank stores only its share share_of(n, rank, P) of every s_i and y_i;
// the Gram entries new in an iteration (the new pair with the k pairs held and with each other,
// and g with all of them: 6k + 6 numbers) are summed over ranks in ONE allreduce (then broadcast from rank 0,
// so every rank has the same bits whatever MPI's reduction order), each rank forms its share of d and one
// allgather completes it. Without sharding every rank computes everything itself (no communication). Dot
// products are summed in double in fixed-size chunks in a fixed order: bit-identical for any number of
// threads.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "optim/optimizer.hpp"

namespace pdegen {

// Checkpoint state (full length at any rank count, see Optimizer::state()):
//   lbfgs_s, lbfgs_y   [history * n] fp32: the curvature pairs, oldest first (unused slots zero)
//   lbfgs_direction    [n] fp32: the last search direction
//   lbfgs_prev_grad    [n] fp32: the gradient the next pair's y is formed against
//   lbfgs_gram         [(2 history)^2] fp64: Gram matrix of s_0..s_{m-1}, y_0..y_{m-1}
//   lbfgs_scalars      [6] fp64: pairs held, last step length, H_diag, previous loss, iterations, 0
class Lbfgs final : public Optimizer {
 public:
  // `comm` is needed (and copied) only with settings.lbfgs.shard_history.
  Lbfgs(const OptimizerSettings& settings, const ParameterRegistry& params, const Communicator* comm);

  std::string_view name() const override { return "lbfgs"; }
  // Refused: L-BFGS evaluates the loss itself (the closure step).
  void step(ParameterRegistry& params, double lr) override;
  StepResult step(ParameterRegistry& params, double lr, const LossClosure& closure,
                  double grad_clip) override;

  std::vector<std::pair<std::string, Tensor*>> state() override;
  void gather_state() override;
  void scatter_state() override;

  int pairs() const { return count_; }                // curvature pairs held now
  int64_t skipped_pairs() const { return skipped_; }  // pairs refused by the curvature test
  int64_t iterations() const { return iterations_; }  // quasi-Newton iterations so far
  int64_t stored_floats() const;                      // history held by this rank (s and y)

 private:
  // The pair (t d, g - prev_grad) on this rank's share: tested, maybe damped, then appended
  // (dropping the oldest when full); also returns g's dot products with the new basis.
  void update_history_and_direction(const float* g);
  // d = H g by the two-loop recursion in coefficient space, formed on this rank's share.
  void form_direction(const float* g, const std::vector<double>& g_dots);
  // Sums `values` over ranks (sharded only), identically on every rank.
  void global_sum(std::vector<double>& values) const;
  void release_export();

  LbfgsSettings settings_;
  bool sharded_;
  std::unique_ptr<Communicator> comm_;  // only when sharded
  int64_t n_;                           // flat buffer length
  Share share_;                         // this rank's elements of every history vector
  int m_;                               // history size
  Tensor s_, y_;                        // [m * share] pairs, oldest first
  Tensor prev_grad_;                    // [share]
  Tensor direction_;                    // [n] full, identical on every rank
  Tensor start_values_;                 // [n] x0 of the line search
  std::vector<double> gram_;            // [2m x 2m]: s_i -> i, y_i -> m + i
  int count_ = 0;
  double step_length_ = 0, h_diag_ = 1, prev_loss_ = 0;
  int64_t iterations_ = 0, skipped_ = 0;
  // Full-length checkpoint tensors (sharded: gathered copies; else only the small ones).
  Tensor export_s_, export_y_, export_prev_grad_, export_gram_, export_scalars_;
};

}  // namespace pdegen

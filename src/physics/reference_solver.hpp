// The reference solver for poisson2d and poisson3d (docs/theory.md, "Reference
// solver"): the assembled Q1 system K(nu) u = F on the n^Dim node grid of the unit
// square or cube, with u = 1 on the x = 0 plane and u = 0 on the x = 1 plane eliminated (their rows
// are the identity, their values moved to the right-hand side) and natural (zero-flux) conditions
// on the other faces.
//
// K and F are assembled element by element with q1::element_matrix and q1::element_load, the
// functions the training loss uses, so u_ref is exactly the minimiser of the discrete energy the
// network is trained on. The system is solved by conjugate gradients preconditioned with one
// geometric multigrid V-cycle (multigrid.hpp); the cost per solve is linear in the number of nodes
// and the iteration count does not grow with n.
//
// Convergence is measured by the true relative residual ||F - K u|| / ||F - K u_0|| over the free
// nodes, u_0 being the lift (the Dirichlet values, zero inside); the recursively updated residual of
// CG is checked against the recomputed one before a solve is declared converged.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.hpp"
#include "physics/grid_field.hpp"
#include "physics/multigrid.hpp"

namespace pdegen::physics {

enum class Preconditioner : uint8_t {
  multigrid,  // one V-cycle per iteration (the default, and the only one that scales)
  jacobi,     // the diagonal (for comparisons)
  none        // plain CG (for comparisons)
};

struct SolverOptions {
  double tolerance = 1e-10;  // on the relative residual defined above
  int max_iterations = 500;
  Preconditioner preconditioner = Preconditioner::multigrid;
  MultigridOptions multigrid;
};

struct SolveReport {
  int iterations = 0;
  double relative_residual = 0;  // recomputed from the returned solution, not CG's recursion
  double seconds = 0;            // the whole solve: assembly, multigrid setup and iterations
  double setup_seconds = 0;      // of which assembly and multigrid setup
};

// The source f of -div(nu grad u) = f: the deck's constant, or nodal values (n^Dim, x fastest),
// interpolated multilinearly to the Gauss points like nu.
class Source {
 public:
  static Source constant(double value) { return Source(value, nullptr); }
  static Source nodal(const double* values) { return Source(0, values); }
  double at(int64_t node) const { return values_ != nullptr ? values_[node] : value_; }

 private:
  Source(double value, const double* values) : value_(value), values_(values) {}
  double value_;
  const double* values_;
};

// A solver for one grid size, reusable sample after sample (its buffers and hierarchy are kept).
// One solve at a time per object.
template <int Dim>
class PoissonSolver {
 public:
  // `threads`: parallelise each solve over the OpenMP threads (false when the caller runs one
  // solver per thread instead).
  explicit PoissonSolver(int n, const SolverOptions& options = {}, bool threads = true);

  int resolution() const { return n_; }
  int multigrid_levels() const { return mg_.levels(); }

  // log_nu: n^Dim nodal values of log nu (x fastest). u: n^Dim doubles, overwritten with the
  // solution. Throws pdegen::Error naming the residual reached if the tolerance is not met within
  // max_iterations.
  SolveReport solve(const double* log_nu, const Source& f, double* u);

 private:
  void assemble(const double* log_nu, const Source& f);
  void check_coefficients(const double* log_nu, const Source& f);
  void precondition(const Field<Dim>& r, Field<Dim>& z);
  double true_residual_norm();  // r_ = b_ - A w_; returns ||r_||

  int n_;
  SolverOptions options_;
  bool threads_;
  Multigrid<Dim> mg_;  // owns the fine operator A
  Field<Dim> b_, w_, r_, z_, p_, q_, inv_diag_;
  std::vector<double> nu_;  // nodal nu = exp(log nu)
};

// One solve with a temporary solver (prefer a PoissonSolver for many samples of one size).
template <int Dim>
SolveReport solve_poisson(const double* log_nu, const Source& f, int n, double* u,
                          const SolverOptions& options = {});

// Every sample of log_nu ([b, 1, n, n] or [b, 1, n, n, n], fp32, plain) into u (the same shape, fp32
// or fp64, plain) with a constant source. Small grids solve one sample per OpenMP thread; large
// grids (more than `batch_sample_parallel_max_nodes` nodes, or a single sample) run each solve over
// all threads. Either way the numbers are bitwise the same. Returns one report per sample.
inline constexpr int64_t batch_sample_parallel_max_nodes = 256 * 256;
std::vector<SolveReport> solve_poisson_batch(const Tensor& log_nu, double source, Tensor& u,
                                             const SolverOptions& options = {});

}  // namespace pdegen::physics

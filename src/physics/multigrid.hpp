// Geometric multigrid V-cycle on the reference solver's grid hierarchy, in 2D and 3D, used as the
// preconditioner of its conjugate gradient (docs/theory.md, "Reference solver").
//
// - Levels: each axis of m cells coarsens to ceil(m / 2) cells over the same unit square (nested
//   when m is even, not nested when m is odd), until a level has at most `coarsest_nodes` nodes.
// - Coarse operators: Galerkin, A_c = P^T A P with bilinear P (grid_transfer.hpp). This is robust
//   to the coefficient's contrast, unlike re-discretisation with an averaged coefficient, because the
//   coarse correction is then the energy-optimal one in the range of P whatever nu does.
//   (bilinear in 2D, trilinear in 3D)
// - Smoother: Chebyshev polynomial of D^-1 A (Jacobi-preconditioned), the same polynomial before and
//   after the coarse correction, targeting the eigenvalues in [lmax / range, lmax], with lmax
//   Gershgorin's bound: a true upper bound, so the smoother never amplifies an error component.
//   The default, degree 1, is damped Jacobi with weight 2 / (lmax (1 + 1 / range)); higher degrees
//   cut the iteration count by one or two but cost more per iteration (docs/theory.md has the table).
// - Coarsest level: banded Cholesky, exact.
// With the same smoother pre and post, Galerkin coarse operators and an exact coarsest solve, the
// V-cycle is a symmetric positive definite operator B ~ A^-1, as conjugate gradients require.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "physics/dense_cholesky.hpp"
#include "physics/grid_field.hpp"
#include "physics/grid_transfer.hpp"
#include "physics/stencil_operator.hpp"

namespace pdegen::physics {

struct MultigridOptions {
  int smoothing_degree = 1;      // Chebyshev degree of the pre- and of the post-smoother
  double smoothing_range = 8;    // the smoother damps eigenvalues of D^-1 A in [lmax / range, lmax]
  int64_t coarsest_nodes = 400;  // coarsen while a level has more nodes than this
};

template <int Dim>
class Multigrid {
 public:
  // The hierarchy for a grid of `nodes` on the unit square or cube with Dirichlet planes at x = 0, 1.
  // `threads`: run the level loops over OpenMP teams (false when the caller parallelises over samples).
  Multigrid(const Index<Dim>& nodes, bool threads, const MultigridOptions& options = {});

  // The finest level's operator: fill its coefficients, then call setup().
  StencilOperator<Dim>& fine_operator() { return levels_.front().a; }
  const StencilOperator<Dim>& fine_operator() const { return levels_.front().a; }

  // Coarse operators, smoother bounds and the coarsest factorisation for the current fine operator.
  void setup();

  // z = B r: one V-cycle from a zero initial guess. r and z live on the finest layout; r is not changed.
  void apply(const Field<Dim>& r, Field<Dim>& z);

  int levels() const { return static_cast<int>(levels_.size()); }
  const GridLayout<Dim>& level_layout(int level) const {
    return levels_[static_cast<std::size_t>(level)].layout;
  }
  // A level's operator (coarse levels: after setup()) and its smoother's bound on lmax(D^-1 A).
  const StencilOperator<Dim>& level_operator(int level) const {
    return levels_[static_cast<std::size_t>(level)].a;
  }
  double smoother_upper_bound(int level) const { return levels_[static_cast<std::size_t>(level)].upper; }

 private:
  struct Level {
    GridLayout<Dim> layout;
    bool threads = false;
    StencilOperator<Dim> a;
    Field<Dim> inv_diag;
    Field<Dim> b, x, r, d;  // right-hand side and correction (coarse levels only); smoother residual and step
    double upper = 0, lower = 0;
  };

  void cycle(std::size_t level, const Field<Dim>& b, Field<Dim>& x);
  void smooth(Level& level, const Field<Dim>& b, Field<Dim>& x, bool from_zero, bool want_residual);
  void solve_coarsest(const Field<Dim>& b, Field<Dim>& x);

  MultigridOptions options_;
  std::vector<Level> levels_;
  std::vector<GridTransfer<Dim>> transfers_;
  DenseCholesky coarsest_;
  std::vector<double> coarse_rhs_;
};

}  // namespace pdegen::physics

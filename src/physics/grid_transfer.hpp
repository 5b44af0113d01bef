// Transfer between two levels of the reference solver's hierarchy: prolongation P = bilinear
// interpolation from a coarse grid to a fine grid covering the same unit square, restriction its
// transpose P^T, and the Galerkin coarse operator P^T A P.
//
// The grids need not nest: a fine axis of m cells (m odd, e.g. 63 or 1023) gets (m + 1) / 2 coarse
// cells, and a fine node between two coarse nodes takes their values weighted by its distance, as
// for nested grids. P is the tensor product of one such interpolation per axis. Coarse nodes on the
// Dirichlet columns (x = 0 and x = 1) carry no correction: their columns of P are dropped, which
// also zeroes P's rows for the fine Dirichlet nodes (they sit on the same lines).
#pragma once

#include <vector>

#include "physics/grid_field.hpp"
#include "physics/stencil_operator.hpp"

namespace pdegen::physics {

// Interpolation along one axis from `coarse` nodes to `fine` nodes spanning [0, 1].
struct AxisInterpolation {
  int fine = 0, coarse = 0;
  // Fine node i takes w_left[i] of coarse node left[i] and w_right[i] of coarse node left[i] + 1.
  std::vector<int> left;
  std::vector<double> w_left, w_right;
  // The transpose: coarse node c feeds fine nodes child[child_begin[c] .. child_begin[c + 1]) with
  // weights child_weight[...] (only nonzero weights are listed).
  std::vector<int> child_begin, child;
  std::vector<double> child_weight;

  AxisInterpolation() = default;
  // `drop_ends`: the first and last coarse nodes are Dirichlet nodes; their weights become zero.
  AxisInterpolation(int fine_nodes, int coarse_nodes, bool drop_ends);
};

class GridTransfer {
 public:
  GridTransfer() = default;
  // Transfer between `fine` and `coarse` with Dirichlet columns at x = 0 and x = 1 on both.
  GridTransfer(const GridLayout& fine, const GridLayout& coarse);

  const GridLayout& fine() const { return fine_; }
  const GridLayout& coarse() const { return coarse_; }
  const AxisInterpolation& along_x() const { return px_; }
  const AxisInterpolation& along_y() const { return py_; }
  // True when every coarse node is a fine node (both axes have an even number of fine cells).
  bool nested() const;

  void prolong_add(const Field& coarse, Field& fine, bool threads);           // fine += P coarse
  void restrict_to(const Field& fine, Field& coarse, bool threads);           // coarse = P^T fine
  StencilOperator galerkin(const StencilOperator& fine, bool threads) const;  // P^T A P

 private:
  GridLayout fine_, coarse_;
  AxisInterpolation px_, py_;
  std::vector<double> scratch_;  // one axis done, the other not: ny_c x nx_f or ny_f x nx_c
};

}  // namespace pdegen::physics

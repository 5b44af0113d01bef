// Transfer between two levels of the reference solver's hierarchy, in 2D and 3D: prolongation
// P = bi- or trilinear interpolation from a coarse grid to a fine grid covering the same unit square
// or cube, restriction its transpose P^T, and the Galerkin coarse operator P^T A P.
//
// The grids need not nest: a fine axis of m cells (m odd, e.g. 63 or 1023) gets (m + 1) / 2 coarse
// cells, and a fine node between two coarse nodes takes their values weighted by its distance, as
// for nested grids. P is the tensor product of one such interpolation per axis, and every operation
// runs one axis at a time. Coarse nodes on the Dirichlet planes (x = 0 and x = 1) carry no
// correction: their columns of P are dropped, which also zeroes P's rows for the fine Dirichlet
// nodes (they sit on the same planes).
#pragma once

#include <array>
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

template <int Dim>
class GridTransfer {
 public:
  GridTransfer() = default;
  // Transfer between `fine` and `coarse` with Dirichlet planes at x = 0 and x = 1 on both.
  GridTransfer(const GridLayout<Dim>& fine, const GridLayout<Dim>& coarse);

  const GridLayout<Dim>& fine() const { return fine_; }
  const GridLayout<Dim>& coarse() const { return coarse_; }
  const AxisInterpolation& along(int axis) const { return p_[static_cast<size_t>(axis)]; }
  // True when every coarse node is a fine node (every axis has an even number of fine cells).
  bool nested() const;

  void prolong_add(const Field<Dim>& coarse, Field<Dim>& fine, bool threads);           // fine += P coarse
  void restrict_to(const Field<Dim>& fine, Field<Dim>& coarse, bool threads);           // coarse = P^T fine
  StencilOperator<Dim> galerkin(const StencilOperator<Dim>& fine, bool threads) const;  // P^T A P

 private:
  GridLayout<Dim> fine_, coarse_;
  std::array<AxisInterpolation, Dim> p_;
  std::vector<double> scratch_, scratch_mid_;  // partly transferred fields, one axis at a time
};

}  // namespace pdegen::physics

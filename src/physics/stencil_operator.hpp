// A symmetric linear operator on one grid level, stored as a stencil per node: radius 1 (9 points,
// the assembled fine Q1 matrix) or radius 2 (25 points, the Galerkin coarse operators of grids that
// do not nest). No sparse matrix: the coefficients live in one node field per stencil offset.
//
// Symmetry halves the storage and the memory traffic of a product: only the centre and the
// "forward" offsets (dy > 0, or dy == 0 and dx > 0) are stored, term k at node p holding
// A(p, p + o_k); the backward entry A(p, p - o_k) = A(p - o_k, p) is term k at node p - o_k.
// Entries that would reach outside the grid are zero, and so is the halo, so products need no tests.
#pragma once

#include <cstddef>
#include <vector>

#include "physics/grid_field.hpp"

namespace pdegen::physics {

class StencilOperator {
 public:
  struct Offset {
    int dx, dy;
  };

  StencilOperator() = default;
  StencilOperator(const GridLayout& layout, int radius);

  const GridLayout& layout() const { return layout_; }
  int radius() const { return radius_; }
  int terms() const { return static_cast<int>(offsets_.size()); }  // 5 for radius 1, 13 for 2
  Offset offset(int k) const { return offsets_[static_cast<std::size_t>(k)]; }
  // The stored term holding offset (dx, dy), or -1 for a backward or out-of-radius offset.
  int term_of(int dx, int dy) const;

  Field& coefficients(int k) { return coef_[static_cast<std::size_t>(k)]; }
  const Field& coefficients(int k) const { return coef_[static_cast<std::size_t>(k)]; }
  const Field& diagonal() const { return coef_[0]; }

  // A(p, p + (dx, dy)) for p = (ix, iy) and any offset within the radius, forward or backward.
  double entry(int ix, int iy, int dx, int dy) const;

  void apply(const Field& x, Field& y, bool threads) const;                     // y = A x
  void subtract_apply(const Field& x, Field& y, bool threads) const;            // y -= A x
  void residual(const Field& b, const Field& x, Field& r, bool threads) const;  // r = b - A x

  // max_p sum_q |A(p, q)| / A(p, p): Gershgorin's bound on the spectrum of D^-1 A.
  double jacobi_gershgorin_bound(bool threads) const;

  // The operator as a dense row-major matrix over nodes numbered iy * nx + ix (coarsest solves, tests).
  std::vector<double> to_dense() const;

  void set_zero();

 private:
  enum class Mode { assign, subtract, residual };
  template <Mode mode>
  void product(const Field* b, const Field& x, Field& y, bool threads) const;

  GridLayout layout_;
  int radius_ = 0;
  std::vector<Offset> offsets_;
  std::vector<int> term_table_;  // (dy + r) * (2r + 1) + dx + r -> term or -1
  std::vector<Field> coef_;
};

}  // namespace pdegen::physics

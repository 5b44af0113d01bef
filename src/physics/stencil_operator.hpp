// A symmetric linear operator on one grid level, stored as a stencil per node: radius 1 (9 points
// in 2D, 27 in 3D: the assembled fine Q1 matrix) or radius 2 (25 / 125 points: the Galerkin coarse
// operators of grids that do not nest). No sparse matrix: the coefficients live in one node field
// per stencil offset.
//
// Symmetry halves the storage and the memory traffic of a product: only the centre and the
// "forward" offsets (the last nonzero component positive: dz > 0, or dz == 0 and dy > 0, or
// dz == dy == 0 and dx > 0) are stored, term k at node p holding A(p, p + o_k); the backward entry
// A(p, p - o_k) = A(p - o_k, p) is term k at node p - o_k. Terms are numbered in lexicographic
// order (z, then y, then x), the centre first. Entries that would reach outside the grid are zero,
// and so is the halo, so products need no tests.
#pragma once

#include <cstddef>
#include <vector>

#include "physics/grid_field.hpp"

namespace pdegen::physics {

template <int Dim>
class StencilOperator {
 public:
  using Offset = Index<Dim>;

  StencilOperator() = default;
  StencilOperator(const GridLayout<Dim>& layout, int radius);

  const GridLayout<Dim>& layout() const { return layout_; }
  int radius() const { return radius_; }
  // 5 / 13 terms for radius 1 / 2 in 2D, 14 / 63 in 3D.
  int terms() const { return static_cast<int>(offsets_.size()); }
  const Offset& offset(int k) const { return offsets_[static_cast<std::size_t>(k)]; }
  // The stored term holding offset d, or -1 for a backward or out-of-radius offset.
  int term_of(const Offset& d) const;

  Field<Dim>& coefficients(int k) { return coef_[static_cast<std::size_t>(k)]; }
  const Field<Dim>& coefficients(int k) const { return coef_[static_cast<std::size_t>(k)]; }
  const Field<Dim>& diagonal() const { return coef_[0]; }

  // A(p, p + d) for any offset d within the radius, forward or backward.
  double entry(const Index<Dim>& p, const Offset& d) const;

  void apply(const Field<Dim>& x, Field<Dim>& y, bool threads) const;                          // y = A x
  void subtract_apply(const Field<Dim>& x, Field<Dim>& y, bool threads) const;                 // y -= A x
  void residual(const Field<Dim>& b, const Field<Dim>& x, Field<Dim>& r, bool threads) const;  // r = b - A x

  // max_p sum_q |A(p, q)| / A(p, p): Gershgorin's bound on the spectrum of D^-1 A.
  double jacobi_gershgorin_bound(bool threads) const;

  // The operator as a dense row-major matrix over nodes numbered x fastest (coarsest solves, tests).
  std::vector<double> to_dense() const;

  void set_zero();

 private:
  enum class Mode { assign, subtract, residual };
  template <Mode mode>
  void product(const Field<Dim>* b, const Field<Dim>& x, Field<Dim>& y, bool threads) const;
  int table_index(const Offset& d) const;

  GridLayout<Dim> layout_;
  int radius_ = 0;
  std::vector<Offset> offsets_;
  std::vector<int> term_table_;  // offset (lexicographic in the (2r + 1)^Dim cube) -> term or -1
  std::vector<Field<Dim>> coef_;
};

// Calls f(d) for every offset of the cube [-r, r]^Dim in lexicographic order (z, y, x; x fastest).
template <int Dim, class F>
void for_each_offset(int r, F&& f) {
  Index<Dim> d;
  d.fill(-r);
  for (;;) {
    f(static_cast<const Index<Dim>&>(d));
    int a = 0;
    while (a < Dim && d[a] == r) d[a++] = -r;
    if (a == Dim) return;
    ++d[a];
  }
}

// Whether d is stored by a symmetric stencil: its last nonzero component is positive.
template <int Dim>
bool is_forward(const Index<Dim>& d) {
  for (int a = Dim - 1; a >= 0; --a)
    if (d[a] != 0) return d[a] > 0;
  return false;
}

}  // namespace pdegen::physics

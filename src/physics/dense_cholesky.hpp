// Cholesky factorisation A = L L^T of a dense (band-limited) matrix and solves with it: the exact solve on
// the coarsest level of the reference solver's multigrid hierarchy (a few hundred unknowns, factorised once
// per sample).
#pragma once

#include <cstddef>
#include <vector>

namespace pdegen::physics {

class DenseCholesky {
 public:
  DenseCholesky() = default;
  // Factorises the n x n row-major symmetric positive definite matrix `a` (its lower triangle is read).
  // Throws pdegen::Error when a pivot is not positive.
  DenseCholesky(std::vector<double> a, int n);

  int size() const { return n_; }
  // x = A^-1 b; x and b may be the same array.
  void solve(const double* b, double* x) const;

 private:
  int n_ = 0;
  std::size_t band_ = 0;   // L(i, j) == 0 for i - j > band_
  std::vector<double> l_;  // row-major, lower triangle
};

}  // namespace pdegen::physics

// Dense Cholesky factorisation for the coarsest multigrid level (see dense_cholesky.hpp).
#include "physics/dense_cholesky.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"

namespace pdegen::physics {

DenseCholesky::DenseCholesky(std::vector<double> a, int n) : n_(n), l_(std::move(a)) {
  PDEGEN_CHECK(n > 0 && l_.size() == static_cast<size_t>(n) * static_cast<size_t>(n),
               "matrix of {} entries is not {}^2", l_.size(), n);
  const auto un = static_cast<size_t>(n);
  // Grid operators are banded (bandwidth ~ radius * nx) and so is L: work inside the band only.
  for (size_t i = 0; i < un; ++i)
    for (size_t j = 0; j < i; ++j)
      if (l_[i * un + j] != 0) {
        band_ = std::max(band_, i - j);
        break;
      }
  for (size_t j = 0; j < un; ++j) {
    double* lj = &l_[j * un];
    const size_t first = j > band_ ? j - band_ : 0;
    double d = lj[j];
    for (size_t k = first; k < j; ++k) d -= lj[k] * lj[k];
    PDEGEN_CHECK(d > 0, "coarsest-level matrix is not positive definite (pivot {} = {:.3e})", j, d);
    const double djj = std::sqrt(d);
    lj[j] = djj;
    for (size_t i = j + 1; i < un && i <= j + band_; ++i) {
      double* li = &l_[i * un];
      double s = li[j];
      for (size_t k = std::max(first, i > band_ ? i - band_ : 0); k < j; ++k) s -= li[k] * lj[k];
      li[j] = s / djj;
    }
  }
}

void DenseCholesky::solve(const double* b, double* x) const {
  const auto un = static_cast<size_t>(n_);
  for (size_t i = 0; i < un; ++i) {  // L y = b
    const double* li = &l_[i * un];
    double s = b[i];
    for (size_t k = i > band_ ? i - band_ : 0; k < i; ++k) s -= li[k] * x[k];
    x[i] = s / li[i];
  }
  for (size_t i = un; i-- > 0;) {  // L^T x = y
    double s = x[i];
    for (size_t k = i + 1; k < un && k <= i + band_; ++k) s -= l_[k * un + i] * x[k];
    x[i] = s / l_[i * un + i];
  }
}

}  // namespace pdegen::physics

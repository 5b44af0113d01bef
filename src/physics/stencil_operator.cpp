// Stencil operators on one grid level (see stencil_operator.hpp).
#include "physics/stencil_operator.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"

namespace pdegen::physics {

StencilOperator::StencilOperator(const GridLayout& layout, int radius) : layout_(layout), radius_(radius) {
  PDEGEN_CHECK(radius >= 1 && radius <= GridLayout::halo, "stencil radius {} outside [1, {}]", radius,
               GridLayout::halo);
  const int width = 2 * radius + 1;
  term_table_.assign(static_cast<size_t>(width * width), -1);
  auto add = [&](int dx, int dy) {
    term_table_[static_cast<size_t>((dy + radius) * width + dx + radius)] = terms();
    offsets_.push_back({dx, dy});
  };
  add(0, 0);
  for (int dx = 1; dx <= radius; ++dx) add(dx, 0);
  for (int dy = 1; dy <= radius; ++dy)
    for (int dx = -radius; dx <= radius; ++dx) add(dx, dy);
  coef_.reserve(offsets_.size());
  for (size_t k = 0; k < offsets_.size(); ++k) coef_.emplace_back(layout);
}

int StencilOperator::term_of(int dx, int dy) const {
  if (std::abs(dx) > radius_ || std::abs(dy) > radius_) return -1;
  return term_table_[static_cast<size_t>((dy + radius_) * (2 * radius_ + 1) + dx + radius_)];
}

double StencilOperator::entry(int ix, int iy, int dx, int dy) const {
  const int k = term_of(dx, dy);
  if (k >= 0) return coef_[static_cast<size_t>(k)](ix, iy);
  const int back = term_of(-dx, -dy);
  if (back < 0) return 0;
  // The halo of the coefficient fields is zero, so neighbours outside the grid give 0.
  return coef_[static_cast<size_t>(back)].data()[layout_.at(ix + dx, iy + dy)];
}

template <StencilOperator::Mode mode>
void StencilOperator::product(const Field* b, const Field& x, Field& y, bool threads) const {
  PDEGEN_CHECK(&x != &y, "a stencil product cannot run in place");
  const int nx = layout_.nx;
  const int64_t stride = layout_.stride;
  for_rows(layout_.ny, threads, [&](int iy) {
    const double* xr = x.row(iy);
    double* yr = y.row(iy);
    const double* c0 = coef_[0].row(iy);
    // One pass over the row per stored term: the row stays in L1, the coefficients stream once.
    if constexpr (mode == Mode::subtract) {
#pragma omp simd
      for (int ix = 0; ix < nx; ++ix) yr[ix] -= c0[ix] * xr[ix];
    } else if constexpr (mode == Mode::residual) {
      const double* br = b->row(iy);
#pragma omp simd
      for (int ix = 0; ix < nx; ++ix) yr[ix] = br[ix] - c0[ix] * xr[ix];
    } else {
#pragma omp simd
      for (int ix = 0; ix < nx; ++ix) yr[ix] = c0[ix] * xr[ix];
    }
    for (size_t k = 1; k < offsets_.size(); ++k) {
      const int64_t o = offsets_[k].dy * stride + offsets_[k].dx;
      const double* ck = coef_[k].row(iy);
      const double* cb = ck - o;  // term k of the backward neighbour: A(p - o, p) = A(p, p - o)
      const double* xf = xr + o;
      const double* xb = xr - o;
      if constexpr (mode == Mode::assign) {
#pragma omp simd
        for (int ix = 0; ix < nx; ++ix) yr[ix] += ck[ix] * xf[ix] + cb[ix] * xb[ix];
      } else {
#pragma omp simd
        for (int ix = 0; ix < nx; ++ix) yr[ix] -= ck[ix] * xf[ix] + cb[ix] * xb[ix];
      }
    }
  });
}

void StencilOperator::apply(const Field& x, Field& y, bool threads) const {
  product<Mode::assign>(nullptr, x, y, threads);
}

void StencilOperator::subtract_apply(const Field& x, Field& y, bool threads) const {
  product<Mode::subtract>(nullptr, x, y, threads);
}

void StencilOperator::residual(const Field& b, const Field& x, Field& r, bool threads) const {
  PDEGEN_CHECK(&b != &r, "a residual cannot overwrite its right-hand side");
  product<Mode::residual>(&b, x, r, threads);
}

double StencilOperator::jacobi_gershgorin_bound(bool threads) const {
  const int nx = layout_.nx;
  const int64_t stride = layout_.stride;
  std::vector<double> row_max(static_cast<size_t>(layout_.ny));
  for_rows(layout_.ny, threads, [&](int iy) {
    std::vector<double> sum(static_cast<size_t>(nx));
    const double* c0 = coef_[0].row(iy);
    for (int ix = 0; ix < nx; ++ix) sum[static_cast<size_t>(ix)] = std::abs(c0[ix]);
    for (size_t k = 1; k < offsets_.size(); ++k) {
      const double* ck = coef_[k].row(iy);
      const double* cb = ck - (offsets_[k].dy * stride + offsets_[k].dx);
      for (int ix = 0; ix < nx; ++ix) sum[static_cast<size_t>(ix)] += std::abs(ck[ix]) + std::abs(cb[ix]);
    }
    double m = 0;
    for (int ix = 0; ix < nx; ++ix) m = std::max(m, sum[static_cast<size_t>(ix)] / c0[ix]);
    row_max[static_cast<size_t>(iy)] = m;
  });
  return *std::max_element(row_max.begin(), row_max.end());
}

std::vector<double> StencilOperator::to_dense() const {
  const int64_t n = layout_.nodes();
  std::vector<double> a(static_cast<size_t>(n * n), 0.0);
  for (int iy = 0; iy < layout_.ny; ++iy)
    for (int ix = 0; ix < layout_.nx; ++ix)
      for (int dy = -radius_; dy <= radius_; ++dy)
        for (int dx = -radius_; dx <= radius_; ++dx) {
          const int jx = ix + dx, jy = iy + dy;
          if (jx < 0 || jx >= layout_.nx || jy < 0 || jy >= layout_.ny) continue;
          const int64_t row = int64_t{iy} * layout_.nx + ix, col = int64_t{jy} * layout_.nx + jx;
          a[static_cast<size_t>(row * n + col)] = entry(ix, iy, dx, dy);
        }
  return a;
}

void StencilOperator::set_zero() {
  for (Field& c : coef_) c.set_zero();
}

}  // namespace pdegen::physics

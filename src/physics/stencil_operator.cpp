// Stencil operators on one grid level (see stencil_operator.hpp).
#include "physics/stencil_operator.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"

namespace pdegen::physics {

template <int Dim>
StencilOperator<Dim>::StencilOperator(const GridLayout<Dim>& layout, int radius)
    : layout_(layout), radius_(radius) {
  PDEGEN_CHECK(radius >= 1 && radius <= GridLayout<Dim>::halo, "stencil radius {} outside [1, {}]", radius,
               GridLayout<Dim>::halo);
  int cube = 1;
  for (int a = 0; a < Dim; ++a) cube *= 2 * radius + 1;
  term_table_.assign(static_cast<size_t>(cube), -1);
  auto add = [&](const Offset& d) {
    term_table_[static_cast<size_t>(table_index(d))] = terms();
    offsets_.push_back(d);
  };
  add(Offset{});
  for_each_offset<Dim>(radius, [&](const Offset& d) {
    if (is_forward<Dim>(d)) add(d);
  });
  coef_.reserve(offsets_.size());
  for (size_t k = 0; k < offsets_.size(); ++k) coef_.emplace_back(layout);
}

template <int Dim>
int StencilOperator<Dim>::table_index(const Offset& d) const {
  int index = 0;
  for (int a = Dim - 1; a >= 0; --a) index = index * (2 * radius_ + 1) + d[a] + radius_;
  return index;
}

template <int Dim>
int StencilOperator<Dim>::term_of(const Offset& d) const {
  for (int a = 0; a < Dim; ++a)
    if (std::abs(d[a]) > radius_) return -1;
  return term_table_[static_cast<size_t>(table_index(d))];
}

template <int Dim>
double StencilOperator<Dim>::entry(const Index<Dim>& p, const Offset& d) const {
  const int k = term_of(d);
  if (k >= 0) return coef_[static_cast<size_t>(k)](p);
  Offset back;
  for (int a = 0; a < Dim; ++a) back[a] = -d[a];
  const int kb = term_of(back);
  if (kb < 0) return 0;
  // The halo of the coefficient fields is zero, so neighbours outside the grid give 0.
  return coef_[static_cast<size_t>(kb)].data()[layout_.at(p) + layout_.shift(d)];
}

template <int Dim>
template <typename StencilOperator<Dim>::Mode mode>
void StencilOperator<Dim>::product(const Field<Dim>* b, const Field<Dim>& x, Field<Dim>& y,
                                   bool threads) const {
  PDEGEN_CHECK(&x != &y, "a stencil product cannot run in place");
  const int nx = layout_.nx();
  for_lines(layout_.lines(), threads, [&](int l) {
    const double* xr = x.line(l);
    double* yr = y.line(l);
    const double* c0 = coef_[0].line(l);
    // One pass over the line per stored term: the line stays in L1, the coefficients stream once.
    if constexpr (mode == Mode::subtract) {
#pragma omp simd
      for (int ix = 0; ix < nx; ++ix) yr[ix] -= c0[ix] * xr[ix];
    } else if constexpr (mode == Mode::residual) {
      const double* br = b->line(l);
#pragma omp simd
      for (int ix = 0; ix < nx; ++ix) yr[ix] = br[ix] - c0[ix] * xr[ix];
    } else {
#pragma omp simd
      for (int ix = 0; ix < nx; ++ix) yr[ix] = c0[ix] * xr[ix];
    }
    for (size_t k = 1; k < offsets_.size(); ++k) {
      const int64_t o = layout_.shift(offsets_[k]);
      const double* ck = coef_[k].line(l);
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

template <int Dim>
void StencilOperator<Dim>::apply(const Field<Dim>& x, Field<Dim>& y, bool threads) const {
  product<Mode::assign>(nullptr, x, y, threads);
}

template <int Dim>
void StencilOperator<Dim>::subtract_apply(const Field<Dim>& x, Field<Dim>& y, bool threads) const {
  product<Mode::subtract>(nullptr, x, y, threads);
}

template <int Dim>
void StencilOperator<Dim>::residual(const Field<Dim>& b, const Field<Dim>& x, Field<Dim>& r,
                                    bool threads) const {
  PDEGEN_CHECK(&b != &r, "a residual cannot overwrite its right-hand side");
  product<Mode::residual>(&b, x, r, threads);
}

template <int Dim>
double StencilOperator<Dim>::jacobi_gershgorin_bound(bool threads) const {
  const int nx = layout_.nx();
  std::vector<double> line_max(static_cast<size_t>(layout_.lines()));
  for_lines(layout_.lines(), threads, [&](int l) {
    std::vector<double> sum(static_cast<size_t>(nx));
    const double* c0 = coef_[0].line(l);
    for (int ix = 0; ix < nx; ++ix) sum[static_cast<size_t>(ix)] = std::abs(c0[ix]);
    for (size_t k = 1; k < offsets_.size(); ++k) {
      const double* ck = coef_[k].line(l);
      const double* cb = ck - layout_.shift(offsets_[k]);
      for (int ix = 0; ix < nx; ++ix) sum[static_cast<size_t>(ix)] += std::abs(ck[ix]) + std::abs(cb[ix]);
    }
    double m = 0;
    for (int ix = 0; ix < nx; ++ix) m = std::max(m, sum[static_cast<size_t>(ix)] / c0[ix]);
    line_max[static_cast<size_t>(l)] = m;
  });
  return *std::max_element(line_max.begin(), line_max.end());
}

template <int Dim>
std::vector<double> StencilOperator<Dim>::to_dense() const {
  const int64_t n = layout_.nodes();
  std::vector<double> dense(static_cast<size_t>(n * n), 0.0);
  auto flat = [&](const Index<Dim>& p) {
    int64_t f = 0;
    for (int d = Dim - 1; d >= 0; --d) f = f * layout_.n[d] + p[d];
    return f;
  };
  for (int64_t row = 0; row < n; ++row) {
    Index<Dim> p;
    for (int64_t r = row, d = 0; d < Dim; ++d) {
      p[d] = static_cast<int>(r % layout_.n[d]);
      r /= layout_.n[d];
    }
    for_each_offset<Dim>(radius_, [&](const Offset& d) {
      Index<Dim> q;
      for (int axis = 0; axis < Dim; ++axis) {
        q[axis] = p[axis] + d[axis];
        if (q[axis] < 0 || q[axis] >= layout_.n[axis]) return;
      }
      dense[static_cast<size_t>(row * n + flat(q))] = entry(p, d);
    });
  }
  return dense;
}

template <int Dim>
void StencilOperator<Dim>::set_zero() {
  for (Field<Dim>& c : coef_) c.set_zero();
}

template class StencilOperator<2>;
template class StencilOperator<3>;

}  // namespace pdegen::physics

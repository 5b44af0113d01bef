// Node fields of the reference solver's grid hierarchy (see grid_field.hpp).
#include "physics/grid_field.hpp"

#include <cstring>
#include <utility>

#include "core/allocator.hpp"
#include "core/error.hpp"

namespace pdegen::physics {

template <int Dim>
GridLayout<Dim>::GridLayout(const Index<Dim>& nodes) : n(nodes) {
  for (int d = 0; d < Dim; ++d)
    PDEGEN_CHECK(n[d] >= 2, "a grid needs at least 2 nodes per axis, got {} along axis {}", n[d], d);
  constexpr int64_t line = 8;  // doubles per 64-byte cache line
  step[0] = 1;
  step[1] = (n[0] + 2 * halo + line - 1) / line * line;
  for (int d = 2; d < Dim; ++d) step[d] = step[d - 1] * (n[d - 1] + 2 * halo);
}

template <int Dim>
GridLayout<Dim> GridLayout<Dim>::cube(int nodes) {
  Index<Dim> n;
  n.fill(nodes);
  return GridLayout(n);
}

template <int Dim>
int64_t GridLayout<Dim>::nodes() const {
  int64_t c = 1;
  for (int d = 0; d < Dim; ++d) c *= n[d];
  return c;
}

template <int Dim>
int64_t GridLayout<Dim>::at(const Index<Dim>& i) const {
  int64_t o = 0;
  for (int d = 0; d < Dim; ++d) o += (i[d] + halo) * step[d];
  return o;
}

template <int Dim>
int64_t GridLayout<Dim>::line_at(int l) const {
  int64_t o = halo;
  for (int d = 1; d < Dim; ++d) {
    o += (l % n[d] + halo) * step[d];
    l /= n[d];
  }
  return o;
}

template <int Dim>
int64_t GridLayout<Dim>::shift(const Index<Dim>& d) const {
  int64_t o = 0;
  for (int a = 0; a < Dim; ++a) o += d[a] * step[a];
  return o;
}

template <int Dim>
Field<Dim>::Field(const GridLayout<Dim>& layout) : layout_(layout) {
  const size_t bytes = static_cast<size_t>(layout_.size()) * sizeof(double);
  data_ = static_cast<double*>(CachingAllocator::host().allocate(bytes));
  std::memset(data_, 0, bytes);
}

template <int Dim>
Field<Dim>::~Field() {
  CachingAllocator::host().release(data_, static_cast<size_t>(layout_.size()) * sizeof(double));
}

template <int Dim>
Field<Dim>::Field(Field&& other) noexcept
    : layout_(other.layout_), data_(std::exchange(other.data_, nullptr)) {}

template <int Dim>
Field<Dim>& Field<Dim>::operator=(Field&& other) noexcept {
  if (this != &other) {
    CachingAllocator::host().release(data_, static_cast<size_t>(layout_.size()) * sizeof(double));
    layout_ = other.layout_;
    data_ = std::exchange(other.data_, nullptr);
  }
  return *this;
}

template <int Dim>
void Field<Dim>::set_zero() {
  if (data_ != nullptr) std::memset(data_, 0, static_cast<size_t>(layout_.size()) * sizeof(double));
}

template <int Dim>
double dot(const Field<Dim>& a, const Field<Dim>& b, bool threads) {
  const GridLayout<Dim>& g = a.layout();
  const int nx = g.nx();
  return sum_lines(g.lines(), threads, [&](int l) {
    const double* x = a.line(l);
    const double* y = b.line(l);
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int ix = 0; ix < nx; ++ix) s += x[ix] * y[ix];
    return s;
  });
}

template struct GridLayout<2>;
template struct GridLayout<3>;
template class Field<2>;
template class Field<3>;
template double dot(const Field<2>&, const Field<2>&, bool);
template double dot(const Field<3>&, const Field<3>&, bool);

}  // namespace pdegen::physics

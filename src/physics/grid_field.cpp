// Node fields of the reference solver's grid hierarchy (see grid_field.hpp).
#include "physics/grid_field.hpp"

#include <cstring>
#include <utility>

#include "core/allocator.hpp"
#include "core/error.hpp"

namespace pdegen::physics {

GridLayout::GridLayout(int nodes_x, int nodes_y) : nx(nodes_x), ny(nodes_y) {
  PDEGEN_CHECK(nx >= 2 && ny >= 2, "a grid needs at least 2 nodes per axis, got {} x {}", nx, ny);
  constexpr int64_t line = 8;  // doubles per 64-byte cache line
  stride = (nx + 2 * halo + line - 1) / line * line;
}

Field::Field(const GridLayout& layout) : layout_(layout) {
  const size_t bytes = static_cast<size_t>(layout_.size()) * sizeof(double);
  data_ = static_cast<double*>(CachingAllocator::host().allocate(bytes));
  std::memset(data_, 0, bytes);
}

Field::~Field() {
  CachingAllocator::host().release(data_, static_cast<size_t>(layout_.size()) * sizeof(double));
}

Field::Field(Field&& other) noexcept : layout_(other.layout_), data_(std::exchange(other.data_, nullptr)) {}

Field& Field::operator=(Field&& other) noexcept {
  if (this != &other) {
    CachingAllocator::host().release(data_, static_cast<size_t>(layout_.size()) * sizeof(double));
    layout_ = other.layout_;
    data_ = std::exchange(other.data_, nullptr);
  }
  return *this;
}

void Field::set_zero() {
  if (data_ != nullptr) std::memset(data_, 0, static_cast<size_t>(layout_.size()) * sizeof(double));
}

double dot(const Field& a, const Field& b, bool threads) {
  const GridLayout& g = a.layout();
  return sum_rows(g.ny, threads, [&](int iy) {
    const double* x = a.row(iy);
    const double* y = b.row(iy);
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int ix = 0; ix < g.nx; ++ix) s += x[ix] * y[ix];
    return s;
  });
}

}  // namespace pdegen::physics

// Node fields of the reference solver's grid hierarchy (docs/theory.md, "Reference solver").
//
// A level has nx x ny nodes, x fastest. Rows are padded to whole cache lines and surrounded by a
// zero halo `GridLayout::halo` nodes wide, so stencil loops read neighbours without boundary tests
// (the halo is never written). Every loop runs row by row, and reductions sum fixed row blocks and
// then the blocks in order, so a solve gives bitwise the same numbers on any number of threads.
#pragma once

#include <cstdint>

namespace pdegen::physics {

struct GridLayout {
  static constexpr int halo = 2;  // the widest stencil (a Galerkin coarse operator) reaches 2 nodes

  int nx = 0, ny = 0;
  int64_t stride = 0;  // doubles from one stored row to the next

  GridLayout() = default;
  GridLayout(int nodes_x, int nodes_y);

  int64_t nodes() const { return int64_t{nx} * ny; }
  int64_t size() const { return (ny + 2 * halo) * stride; }  // doubles per field, halo included
  int64_t at(int ix, int iy) const { return (iy + halo) * stride + ix + halo; }
  // Below this many nodes an OpenMP team costs about what it saves (bench_solver: two threads tie
  // with one at 128^2 and win from 256^2 on).
  bool worth_threads() const { return nodes() >= 16384; }
};

// One zero-initialised, 64-byte aligned field on a layout (memory from the caching allocator, so
// the solves of a batch reuse their blocks; solve_poisson2d_batch returns them to the system after
// the batch). Move-only.
class Field {
 public:
  Field() = default;
  explicit Field(const GridLayout& layout);
  ~Field();
  Field(Field&& other) noexcept;
  Field& operator=(Field&& other) noexcept;
  Field(const Field&) = delete;
  Field& operator=(const Field&) = delete;

  const GridLayout& layout() const { return layout_; }
  double* data() { return data_; }
  const double* data() const { return data_; }
  double* row(int iy) { return data_ + layout_.at(0, iy); }
  const double* row(int iy) const { return data_ + layout_.at(0, iy); }
  double& operator()(int ix, int iy) { return data_[layout_.at(ix, iy)]; }
  double operator()(int ix, int iy) const { return data_[layout_.at(ix, iy)]; }

  void set_zero();

 private:
  GridLayout layout_;
  double* data_ = nullptr;
};

// f(iy) for every row, over an OpenMP team when `threads` is set.
template <class F>
void for_rows(int ny, bool threads, F&& f) {
#pragma omp parallel for schedule(static) if (threads)
  for (int iy = 0; iy < ny; ++iy) f(iy);
}

// Sum over rows of row_sum(iy), in an order that does not depend on the thread count: rows are
// summed in `blocks` fixed blocks, then the blocks in order.
template <class F>
double sum_rows(int ny, bool threads, F&& row_sum) {
  constexpr int blocks = 64;
  double partial[blocks] = {};
  const int per_block = (ny + blocks - 1) / blocks;
#pragma omp parallel for schedule(static) if (threads)
  for (int b = 0; b < blocks; ++b) {
    double s = 0;
    for (int iy = b * per_block; iy < ny && iy < (b + 1) * per_block; ++iy) s += row_sum(iy);
    partial[b] = s;
  }
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

// (a, b) over the nodes of the layout.
double dot(const Field& a, const Field& b, bool threads);

}  // namespace pdegen::physics

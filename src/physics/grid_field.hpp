// Node fields of the reference solver's grid hierarchy, in 2D and 3D (docs/theory.md, "Reference
// solver"). The space dimension is a template parameter, so one code serves both.
//
// A level has n[0] x n[1] (x n[2]) nodes, x fastest. Lines along x are padded to whole cache lines
// and the field is surrounded by a zero halo `GridLayout::halo` nodes wide on every side, so
// stencil loops read neighbours without boundary tests (the halo is never written). Every loop runs
// line by line (a line is one x row: line l = iy + ny * iz), and reductions sum fixed blocks of
// lines and then the blocks in order, so a solve gives bitwise the same numbers on any number of
// threads.
#pragma once

#include <array>
#include <cstdint>

namespace pdegen::physics {

template <int Dim>
using Index = std::array<int, Dim>;  // a node or an offset, x first

template <int Dim>
struct GridLayout {
  static_assert(Dim == 2 || Dim == 3, "grids are 2D or 3D");
  static constexpr int dim = Dim;
  static constexpr int halo = 2;  // the widest stencil (a Galerkin coarse operator) reaches 2 nodes

  Index<Dim> n{};                   // nodes per axis
  std::array<int64_t, Dim> step{};  // doubles from one node to the next along each axis (step[0] = 1)

  GridLayout() = default;
  explicit GridLayout(const Index<Dim>& nodes);
  // The cube with `nodes` nodes per axis.
  static GridLayout cube(int nodes);

  int nx() const { return n[0]; }
  int64_t nodes() const;
  // Lines along x: ny (2D) or ny * nz (3D).
  int lines() const { return static_cast<int>(nodes() / n[0]); }
  int64_t size() const { return (n[Dim - 1] + 2 * halo) * step[Dim - 1]; }  // doubles, halo included
  // Storage offset of a node, or of the first node of line l.
  int64_t at(const Index<Dim>& i) const;
  int64_t line_at(int l) const;
  // The memory distance of an offset (any sign, within the halo).
  int64_t shift(const Index<Dim>& d) const;
  // Below this many nodes an OpenMP team costs about what it saves (bench_solver: two threads tie
  // with one at 128^2 and win from 256^2 on).
  bool worth_threads() const { return nodes() >= 16384; }
  bool operator==(const GridLayout&) const = default;
};

// One zero-initialised, 64-byte aligned field on a layout (memory from the caching allocator, so
// the solves of a batch reuse their blocks; solve_poisson_batch returns them to the system after the
// batch). Move-only.
template <int Dim>
class Field {
 public:
  Field() = default;
  explicit Field(const GridLayout<Dim>& layout);
  ~Field();
  Field(Field&& other) noexcept;
  Field& operator=(Field&& other) noexcept;
  Field(const Field&) = delete;
  Field& operator=(const Field&) = delete;

  const GridLayout<Dim>& layout() const { return layout_; }
  double* data() { return data_; }
  const double* data() const { return data_; }
  double* line(int l) { return data_ + layout_.line_at(l); }
  const double* line(int l) const { return data_ + layout_.line_at(l); }
  double& operator()(const Index<Dim>& i) { return data_[layout_.at(i)]; }
  double operator()(const Index<Dim>& i) const { return data_[layout_.at(i)]; }

  void set_zero();

 private:
  GridLayout<Dim> layout_;
  double* data_ = nullptr;
};

// f(l) for every line, over an OpenMP team when `threads` is set.
template <class F>
void for_lines(int lines, bool threads, F&& f) {
#pragma omp parallel for schedule(static) if (threads)
  for (int l = 0; l < lines; ++l) f(l);
}

// Sum over lines of line_sum(l), in an order that does not depend on the thread count: lines are
// summed in `blocks` fixed blocks, then the blocks in order.
template <class F>
double sum_lines(int lines, bool threads, F&& line_sum) {
  constexpr int blocks = 64;
  double partial[blocks] = {};
  const int per_block = (lines + blocks - 1) / blocks;
#pragma omp parallel for schedule(static) if (threads)
  for (int b = 0; b < blocks; ++b) {
    double s = 0;
    for (int l = b * per_block; l < lines && l < (b + 1) * per_block; ++l) s += line_sum(l);
    partial[b] = s;
  }
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

// (a, b) over the nodes of the layout.
template <int Dim>
double dot(const Field<Dim>& a, const Field<Dim>& b, bool threads);

}  // namespace pdegen::physics

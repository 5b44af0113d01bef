// Prolongation, restriction and Galerkin coarse operators between two grid levels (see grid_transfer.hpp).
#include "physics/grid_transfer.hpp"

#include <algorithm>
#include <cstdlib>

#include "core/error.hpp"

namespace pdegen::physics {

AxisInterpolation::AxisInterpolation(int fine_nodes, int coarse_nodes, bool drop_ends)
    : fine(fine_nodes), coarse(coarse_nodes) {
  PDEGEN_CHECK(coarse >= 2 && fine >= coarse, "cannot interpolate {} nodes from {}", fine, coarse);
  const auto nf = static_cast<size_t>(fine);
  left.resize(nf);
  w_left.resize(nf);
  w_right.resize(nf);
  for (int i = 0; i < fine; ++i) {
    // Fine node i sits at i / (fine - 1) = (l + t) / (coarse - 1): exact integer arithmetic for l, t.
    const int64_t scaled = int64_t{i} * (coarse - 1);
    int l = static_cast<int>(scaled / (fine - 1));
    double t = static_cast<double>(scaled % (fine - 1)) / (fine - 1);
    if (l == coarse - 1) l = coarse - 2, t = 1;  // the last node: right end of the last coarse cell
    const auto s = static_cast<size_t>(i);
    left[s] = l;
    w_left[s] = 1 - t;
    w_right[s] = t;
    if (drop_ends && l == 0) w_left[s] = 0;
    if (drop_ends && l + 1 == coarse - 1) w_right[s] = 0;
  }
  // Transpose into per-coarse-node child lists (fine nodes are visited in order, so lists are sorted).
  std::vector<std::vector<std::pair<int, double>>> lists(static_cast<size_t>(coarse));
  for (size_t s = 0; s < nf; ++s) {
    if (w_left[s] != 0) lists[static_cast<size_t>(left[s])].push_back({static_cast<int>(s), w_left[s]});
    if (w_right[s] != 0) lists[static_cast<size_t>(left[s] + 1)].push_back({static_cast<int>(s), w_right[s]});
  }
  child_begin.assign(1, 0);
  for (const auto& list : lists) {
    for (const auto& [i, w] : list) {
      child.push_back(i);
      child_weight.push_back(w);
    }
    child_begin.push_back(static_cast<int>(child.size()));
  }
}

GridTransfer::GridTransfer(const GridLayout& fine, const GridLayout& coarse)
    : fine_(fine), coarse_(coarse), px_(fine.nx, coarse.nx, true), py_(fine.ny, coarse.ny, false) {
  scratch_.resize(static_cast<size_t>(std::max(int64_t{coarse.ny} * fine.nx, int64_t{fine.ny} * coarse.nx)));
}

bool GridTransfer::nested() const {
  return (fine_.nx - 1) == 2 * (coarse_.nx - 1) && (fine_.ny - 1) == 2 * (coarse_.ny - 1);
}

void GridTransfer::prolong_add(const Field& coarse, Field& fine, bool threads) {
  const int nxf = fine_.nx;
  double* along_x = scratch_.data();  // coarse rows interpolated to the fine x nodes: ny_c x nx_f
  const int* lx = px_.left.data();
  const double *wl = px_.w_left.data(), *wr = px_.w_right.data();
  for_rows(coarse_.ny, threads && coarse_.worth_threads(), [&](int jy) {
    const double* c = coarse.row(jy);
    double* out = along_x + int64_t{jy} * nxf;
    for (int ix = 0; ix < nxf; ++ix) out[ix] = wl[ix] * c[lx[ix]] + wr[ix] * c[lx[ix] + 1];
  });
  for_rows(fine_.ny, threads && fine_.worth_threads(), [&](int iy) {
    const auto s = static_cast<size_t>(iy);
    const double* below = along_x + int64_t{py_.left[s]} * nxf;
    const double* above = below + nxf;
    const double w0 = py_.w_left[s], w1 = py_.w_right[s];
    double* f = fine.row(iy);
#pragma omp simd
    for (int ix = 0; ix < nxf; ++ix) f[ix] += w0 * below[ix] + w1 * above[ix];
  });
}

void GridTransfer::restrict_to(const Field& fine, Field& coarse, bool threads) {
  const int nxc = coarse_.nx;
  double* along_x = scratch_.data();  // fine rows restricted along x: ny_f x nx_c
  for_rows(fine_.ny, threads && fine_.worth_threads(), [&](int iy) {
    const double* f = fine.row(iy);
    double* out = along_x + int64_t{iy} * nxc;
    for (int jx = 0; jx < nxc; ++jx) {
      double s = 0;
      for (int c = px_.child_begin[static_cast<size_t>(jx)]; c < px_.child_begin[static_cast<size_t>(jx) + 1];
           ++c)
        s += px_.child_weight[static_cast<size_t>(c)] * f[px_.child[static_cast<size_t>(c)]];
      out[jx] = s;
    }
  });
  for_rows(coarse_.ny, threads && coarse_.worth_threads(), [&](int jy) {
    double* c = coarse.row(jy);
    for (int jx = 0; jx < nxc; ++jx) c[jx] = 0;
    for (int k = py_.child_begin[static_cast<size_t>(jy)]; k < py_.child_begin[static_cast<size_t>(jy) + 1];
         ++k) {
      const double w = py_.child_weight[static_cast<size_t>(k)];
      const double* src = along_x + int64_t{py_.child[static_cast<size_t>(k)]} * nxc;
#pragma omp simd
      for (int jx = 0; jx < nxc; ++jx) c[jx] += w * src[jx];
    }
  });
}

StencilOperator GridTransfer::galerkin(const StencilOperator& fine, bool threads) const {
  const int rf = fine.radius();
  // Nested bilinear transfer keeps a 9-point operator 9-point; anything else reaches 2 coarse nodes
  // (a coarse node's support spans < 2 coarse cells, plus the fine stencil's reach < 1 coarse cell).
  const int rc = (rf == 1 && nested()) ? 1 : 2;
  StencilOperator coarse(coarse_, rc);
  std::vector<char> out_of_reach(static_cast<size_t>(coarse_.ny), 0);
  for_rows(coarse_.ny, threads && coarse_.worth_threads(), [&](int jy) {
    const auto sy = static_cast<size_t>(jy);
    for (int jx = 0; jx < coarse_.nx; ++jx) {
      if (jx == 0 || jx == coarse_.nx - 1) {  // Dirichlet rows: the identity
        coarse.coefficients(0)(jx, jy) = 1;
        continue;
      }
      const auto sx = static_cast<size_t>(jx);
      // A_c(J, J + D) = sum_i P(i, J) sum_k A(i, k) P(k, J + D), for the stored (forward) D only.
      for (int cy = py_.child_begin[sy]; cy < py_.child_begin[sy + 1]; ++cy) {
        const int iy = py_.child[static_cast<size_t>(cy)];
        const double wy = py_.child_weight[static_cast<size_t>(cy)];
        for (int cx = px_.child_begin[sx]; cx < px_.child_begin[sx + 1]; ++cx) {
          const int ix = px_.child[static_cast<size_t>(cx)];
          const double wi = wy * px_.child_weight[static_cast<size_t>(cx)];
          for (int dy = -rf; dy <= rf; ++dy) {
            const int ky = iy + dy;
            if (ky < 0 || ky >= fine_.ny) continue;
            const auto ty = static_cast<size_t>(ky);
            const int ly = py_.left[ty];
            const double wky[2] = {py_.w_left[ty], py_.w_right[ty]};
            for (int dx = -rf; dx <= rf; ++dx) {
              const int kx = ix + dx;
              if (kx < 0 || kx >= fine_.nx) continue;
              const double a = fine.entry(ix, iy, dx, dy);
              if (a == 0) continue;
              const auto tx = static_cast<size_t>(kx);
              const int lx = px_.left[tx];
              const double wkx[2] = {px_.w_left[tx], px_.w_right[tx]};
              for (int by = 0; by < 2; ++by)
                for (int bx = 0; bx < 2; ++bx) {
                  const double w = wky[by] * wkx[bx];
                  if (w == 0) continue;
                  const int ox = lx + bx - jx, oy = ly + by - jy;
                  if (std::abs(ox) > rc || std::abs(oy) > rc) {
                    out_of_reach[sy] = 1;
                    continue;
                  }
                  const int k = coarse.term_of(ox, oy);
                  if (k >= 0) coarse.coefficients(k)(jx, jy) += wi * a * w;
                }
            }
          }
        }
      }
    }
  });
  for (char bad : out_of_reach)
    PDEGEN_CHECK(!bad, "Galerkin product reaches beyond the coarse stencil radius {}", rc);
  return coarse;
}

}  // namespace pdegen::physics

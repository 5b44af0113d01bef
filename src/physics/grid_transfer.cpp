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
  const int rf = fine.radius(), wf = 2 * rf + 1;
  // Nested bilinear transfer keeps a 9-point operator 9-point. Otherwise coarse nodes J and K couple
  // when fine nodes within the fine stencil's reach lie in both hats' open supports (2H wide): for
  // a 9-point A, |X_J - X_K| < 2H + h < 3H; for a 25-point A the alignment of the two grids keeps
  // it below 3H too. So A_c reaches 2 coarse nodes; both stages check it and throw otherwise.
  const int rc = (rf == 1 && nested()) ? 1 : 2;
  StencilOperator coarse(coarse_, rc);
  const int nxf = fine_.nx, nyf = fine_.ny, nxc = coarse_.nx;
  constexpr int reach = 2, span = 2 * reach + 1;  // x offsets between coarse nodes, checked below

  // Where A(p, p + d) lives for each of the wf x wf offsets d: a stored (forward) term at p, or the
  // backward term's coefficient at p + d. Either way a pointer shift from p.
  std::vector<const Field*> term_field(static_cast<size_t>(wf * wf));
  std::vector<int64_t> term_shift(static_cast<size_t>(wf * wf));
  for (int dy = -rf; dy <= rf; ++dy)
    for (int dx = -rf; dx <= rf; ++dx) {
      const auto d = static_cast<size_t>((dy + rf) * wf + dx + rf);
      const int forward = fine.term_of(dx, dy);
      term_field[d] = &fine.coefficients(forward >= 0 ? forward : fine.term_of(-dx, -dy));
      term_shift[d] = forward >= 0 ? 0 : dy * fine_.stride + dx;
    }

  // P = Py (x) Px, so A_c(J, K) = sum_iy Py(iy, Jy) sum_dy Py(iy + dy, Ky) T_dy(iy; Jx, Kx) with the
  // x-stage T_dy(iy; Jx, Kx) = sum_ix sum_dx Px(ix, Jx) A((ix, iy), (ix + dx, iy + dy)) Px(ix + dx, Kx).
  // Each coarse row is one task: it forms T for its fine child rows, then the y-stage into its own
  // stencil row only, so tasks never write the same memory.
  //
  // The x-stage scatters each A entry into up to 4 places of T (the parents of ix times those of
  // ix + dx). Which places, with which weights, depends only on (ix, dx): tabulated once, nonzero
  // weights only, as (ix, place in T's row = (Kx - Jx + reach) * nxc + Jx, weight) per dx.
  struct Scatter {
    int ix, place;
    double weight;
  };
  std::vector<std::vector<Scatter>> scatter(static_cast<size_t>(wf));
  for (int dx = -rf; dx <= rf; ++dx)
    for (int ix = std::max(0, -dx); ix < std::min(nxf, nxf - dx); ++ix) {
      const auto jx = static_cast<size_t>(ix), kx = static_cast<size_t>(ix + dx);
      const double wj[2] = {px_.w_left[jx], px_.w_right[jx]}, wk[2] = {px_.w_left[kx], px_.w_right[kx]};
      for (int bj = 0; bj < 2; ++bj)
        for (int bk = 0; bk < 2; ++bk) {
          const int offset = px_.left[kx] + bk - px_.left[jx] - bj;
          const double w = wj[bj] * wk[bk];
          if (w == 0) continue;
          PDEGEN_CHECK(offset >= -reach && offset <= reach, "Galerkin x-stage offset {} beyond {}", offset,
                       reach);
          scatter[static_cast<size_t>(dx + rf)].push_back(
              {ix, (offset + reach) * nxc + px_.left[jx] + bj, w});
        }
    }
  std::vector<char> out_of_reach(static_cast<size_t>(coarse_.ny), 0);
  const int* ly = py_.left.data();
  // Coarse rows go in contiguous blocks, in order within a block, so consecutive rows share fine
  // child rows: their x-stage is kept in a small ring (children of one coarse row span < 6 fine rows)
  // instead of being formed twice. The result does not depend on the blocking.
  const int rows = coarse_.ny, blocks = std::min(rows, 64);
  constexpr int ring = 8;
  const auto t_size = static_cast<size_t>(wf * span * nxc);  // per fine row: [dy][Kx - Jx][Jx]
#pragma omp parallel if (threads && coarse_.worth_threads())
  {
    std::vector<double> t(ring * t_size);
    int held[ring];
#pragma omp for schedule(static)
    for (int block = 0; block < blocks; ++block) {
      std::fill(held, held + ring, -1);
      for (int jy = block * rows / blocks; jy < (block + 1) * rows / blocks; ++jy) {
        const auto sy = static_cast<size_t>(jy);
        for (int c = py_.child_begin[sy]; c < py_.child_begin[sy + 1]; ++c) {
          const int iy = py_.child[static_cast<size_t>(c)];
          const double wy = py_.child_weight[static_cast<size_t>(c)];
          double* ti = t.data() + static_cast<size_t>(iy % ring) * t_size;
          if (held[iy % ring] != iy) {  // x-stage of fine row iy
            held[iy % ring] = iy;
            std::fill(ti, ti + t_size, 0.0);
            for (int dy = -rf; dy <= rf; ++dy) {
              if (iy + dy < 0 || iy + dy >= nyf) continue;
              double* tr = ti + (dy + rf) * span * nxc;
              for (int dx = -rf; dx <= rf; ++dx) {
                const auto d = static_cast<size_t>((dy + rf) * wf + dx + rf);
                const double* a = term_field[d]->row(iy) + term_shift[d];
                for (const Scatter& e : scatter[static_cast<size_t>(dx + rf)])
                  tr[e.place] += e.weight * a[e.ix];
              }
            }
          }
          for (int dy = -rf; dy <= rf; ++dy) {  // y-stage: this child row's share of coarse row jy
            const int ky = iy + dy;
            if (ky < 0 || ky >= nyf) continue;
            const double* tr = ti + (dy + rf) * span * nxc;
            const double wk[2] = {py_.w_left[static_cast<size_t>(ky)], py_.w_right[static_cast<size_t>(ky)]};
            for (int bk = 0; bk < 2; ++bk) {
              const double w = wy * wk[bk];
              const int oy = ly[ky] + bk - jy;
              if (w == 0) continue;
              if (oy < -rc || oy > rc) {
                out_of_reach[sy] = 1;
                continue;
              }
              for (int ox = -reach; ox <= reach; ++ox) {
                const int k = coarse.term_of(ox, oy);
                if (k < 0) continue;  // backward (stored at the neighbour) or beyond the radius
                double* cr = coarse.coefficients(k).row(jy);
                const double* src = tr + (ox + reach) * nxc;
#pragma omp simd
                for (int jx = 0; jx < nxc; ++jx) cr[jx] += w * src[jx];
              }
            }
            if (rc < reach)  // a 9-point result: the product must not reach 2 coarse nodes along x
              for (int jx = 0; jx < nxc; ++jx)
                if (tr[jx] != 0 || tr[(span - 1) * nxc + jx] != 0) out_of_reach[sy] = 1;
          }
        }
        coarse.coefficients(0)(0, jy) = 1;  // Dirichlet rows: the identity (P gave them nothing)
        coarse.coefficients(0)(nxc - 1, jy) = 1;
      }
    }
  }
  for (char bad : out_of_reach)
    PDEGEN_CHECK(!bad, "Galerkin product reaches beyond the coarse stencil radius {}", rc);
  return coarse;
}

}  // namespace pdegen::physics

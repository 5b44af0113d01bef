// Prolongation, restriction and Galerkin coarse operators between two grid levels, in 2D and 3D (see
// grid_transfer.hpp).
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

namespace {

// Middle axes of a transfer (3D's y): `in` is [outer][n_in][inner], `out` [outer][n_out][inner].
// Prolongation: out[o][i] = w_left[i] in[o][left[i]] + w_right[i] in[o][left[i] + 1].
void prolong_axis(const AxisInterpolation& p, const double* in, double* out, int outer, int64_t inner,
                  bool threads) {
  for_lines(outer * p.fine, threads, [&](int oi) {
    const int o = oi / p.fine, i = oi % p.fine;
    const auto s = static_cast<size_t>(i);
    const double* below = in + (int64_t{o} * p.coarse + p.left[s]) * inner;
    const double* above = below + inner;
    const double w0 = p.w_left[s], w1 = p.w_right[s];
    double* dst = out + int64_t{oi} * inner;
#pragma omp simd
    for (int64_t x = 0; x < inner; ++x) dst[x] = w0 * below[x] + w1 * above[x];
  });
}

// Restriction: out[o][c] = sum over the children i of c of child_weight * in[o][i].
void restrict_axis(const AxisInterpolation& p, const double* in, double* out, int outer, int64_t inner,
                   bool threads) {
  for_lines(outer * p.coarse, threads, [&](int oc) {
    const int o = oc / p.coarse, c = oc % p.coarse;
    double* dst = out + int64_t{oc} * inner;
    for (int64_t x = 0; x < inner; ++x) dst[x] = 0;
    for (int k = p.child_begin[static_cast<size_t>(c)]; k < p.child_begin[static_cast<size_t>(c) + 1]; ++k) {
      const double w = p.child_weight[static_cast<size_t>(k)];
      const double* src = in + (int64_t{o} * p.fine + p.child[static_cast<size_t>(k)]) * inner;
#pragma omp simd
      for (int64_t x = 0; x < inner; ++x) dst[x] += w * src[x];
    }
  });
}

}  // namespace

template <int Dim>
GridTransfer<Dim>::GridTransfer(const GridLayout<Dim>& fine, const GridLayout<Dim>& coarse)
    : fine_(fine), coarse_(coarse) {
  for (int a = 0; a < Dim; ++a)
    p_[static_cast<size_t>(a)] = AxisInterpolation(fine.n[a], coarse.n[a], a == 0);
  // Lines along x with the x axis already transferred: coarse lines x fine nx, or fine lines x coarse nx.
  const int64_t coarse_lines = coarse.lines(), fine_lines = fine.lines();
  scratch_.resize(static_cast<size_t>(std::max(coarse_lines * fine.nx(), fine_lines * coarse.nx())));
  if constexpr (Dim == 3)  // x and y transferred, z not: [nz_c][ny_f][nx_f] or [nz_f][ny_c][nx_c]
    scratch_mid_.resize(static_cast<size_t>(std::max(int64_t{coarse.n[2]} * fine.n[1] * fine.nx(),
                                                     int64_t{fine.n[2]} * coarse.n[1] * coarse.nx())));
}

template <int Dim>
bool GridTransfer<Dim>::nested() const {
  for (int a = 0; a < Dim; ++a)
    if (fine_.n[a] - 1 != 2 * (coarse_.n[a] - 1)) return false;
  return true;
}

template <int Dim>
void GridTransfer<Dim>::prolong_add(const Field<Dim>& coarse, Field<Dim>& fine, bool threads) {
  const int nxf = fine_.nx();
  const AxisInterpolation& px = p_[0];
  const AxisInterpolation& pz = p_[Dim - 1];  // the last axis, added into the fine field
  double* along_x = scratch_.data();          // coarse lines interpolated to the fine x nodes
  const int* lx = px.left.data();
  const double *wl = px.w_left.data(), *wr = px.w_right.data();
  for_lines(coarse_.lines(), threads && coarse_.worth_threads(), [&](int jl) {
    const double* c = coarse.line(jl);
    double* out = along_x + int64_t{jl} * nxf;
    for (int ix = 0; ix < nxf; ++ix) out[ix] = wl[ix] * c[lx[ix]] + wr[ix] * c[lx[ix] + 1];
  });
  const double* before_last = along_x;
  int mid = 1;  // fine nodes per plane of the last axis, in units of x lines
  if constexpr (Dim == 3) {
    prolong_axis(p_[1], along_x, scratch_mid_.data(), coarse_.n[2], nxf, threads && fine_.worth_threads());
    before_last = scratch_mid_.data();
    mid = fine_.n[1];
  }
  for_lines(fine_.lines(), threads && fine_.worth_threads(), [&](int il) {
    const auto s = static_cast<size_t>(il / mid);
    const double* below = before_last + (int64_t{pz.left[s]} * mid + il % mid) * nxf;
    const double* above = below + int64_t{mid} * nxf;
    const double w0 = pz.w_left[s], w1 = pz.w_right[s];
    double* f = fine.line(il);
#pragma omp simd
    for (int ix = 0; ix < nxf; ++ix) f[ix] += w0 * below[ix] + w1 * above[ix];
  });
}

template <int Dim>
void GridTransfer<Dim>::restrict_to(const Field<Dim>& fine, Field<Dim>& coarse, bool threads) {
  const int nxc = coarse_.nx();
  const AxisInterpolation& px = p_[0];
  const AxisInterpolation& pz = p_[Dim - 1];
  double* along_x = scratch_.data();  // fine lines restricted along x
  for_lines(fine_.lines(), threads && fine_.worth_threads(), [&](int il) {
    const double* f = fine.line(il);
    double* out = along_x + int64_t{il} * nxc;
    for (int jx = 0; jx < nxc; ++jx) {
      double s = 0;
      for (int c = px.child_begin[static_cast<size_t>(jx)]; c < px.child_begin[static_cast<size_t>(jx) + 1];
           ++c)
        s += px.child_weight[static_cast<size_t>(c)] * f[px.child[static_cast<size_t>(c)]];
      out[jx] = s;
    }
  });
  const double* before_last = along_x;
  int mid = 1;  // coarse nodes per plane of the last axis, in units of x lines
  if constexpr (Dim == 3) {
    restrict_axis(p_[1], along_x, scratch_mid_.data(), fine_.n[2], nxc, threads && coarse_.worth_threads());
    before_last = scratch_mid_.data();
    mid = coarse_.n[1];
  }
  for_lines(coarse_.lines(), threads && coarse_.worth_threads(), [&](int jl) {
    const auto jz = static_cast<size_t>(jl / mid);
    double* c = coarse.line(jl);
    for (int jx = 0; jx < nxc; ++jx) c[jx] = 0;
    for (int k = pz.child_begin[jz]; k < pz.child_begin[jz + 1]; ++k) {
      const double w = pz.child_weight[static_cast<size_t>(k)];
      const double* src = before_last + (int64_t{pz.child[static_cast<size_t>(k)]} * mid + jl % mid) * nxc;
#pragma omp simd
      for (int jx = 0; jx < nxc; ++jx) c[jx] += w * src[jx];
    }
  });
}

template class GridTransfer<2>;
template class GridTransfer<3>;

}  // namespace pdegen::physics

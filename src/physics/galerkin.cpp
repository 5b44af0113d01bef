// The Galerkin coarse operator A_c = P^T A P of a grid transfer (grid_transfer.hpp), in 2D and 3D.
//
// P = Pz (x) Py (x) Px, so A_c(J, K) is a sum over fine nodes i and fine stencil offsets d of
// P(i, J) A(i, i + d) P(i + d, K), and it factors into one stage per axis:
// - x-stage, per fine line (iy, iz): T[dz][dy][Kx - Jx][Jx] = sum_ix sum_dx Px(ix, Jx)
//   A((ix, iy, iz), (ix + dx, iy + dy, iz + dz)) Px(ix + dx, Kx). Each A entry lands in up to 4
//   places of T (the parents of ix times those of ix + dx); which places, with which weights,
//   depends only on (ix, dx), so that is tabulated once.
// - y-stage, per fine plane iz: S[dz][Ky - Jy][Kx - Jx][Jy][Jx] = sum over the fine children iy of
//   Jy and the parents Ky of iy + dy of Py(iy, Jy) Py(iy + dy, Ky) T(iy)[dz][dy].
// - z-stage (3D), per coarse plane Jz: A_c[Kz - Jz] += Pz(iz, Jz) Pz(iz + dz, Kz) S(iz)[dz] over the
//   children iz of Jz. In 2D the single plane's S is A_c itself.
// Coarse planes (3D) or blocks of coarse lines (2D) are the parallel tasks: each writes only its own
// part of A_c, and consecutive coarse lines and planes share fine children, so a task keeps the last
// few T lines and S planes in small rings instead of forming them twice. The result does not depend
// on the blocking or the thread count.
#include <algorithm>

#include "core/error.hpp"
#include "physics/grid_transfer.hpp"

namespace pdegen::physics {

namespace {

constexpr int reach = 2, span = 2 * reach + 1;  // coarse offsets per axis, checked below
constexpr int ring = 8;                         // T lines kept per task
constexpr int z_ring = 4;                       // S planes kept per task (3D)

// One x-stage entry: A's value at fine node ix (for one dx) goes, times `weight`, to T's row at
// `place` = (Kx - Jx + reach) * nxc + Jx.
struct Scatter {
  int ix, place;
  double weight;
};

template <int Dim>
class GalerkinStages {
 public:
  GalerkinStages(const StencilOperator<Dim>& fine, const std::array<AxisInterpolation, Dim>& p,
                 StencilOperator<Dim>& coarse);

  // T's size per fine line and S's per fine plane, in doubles.
  size_t line_size() const { return static_cast<size_t>(wz_ * wf_ * span * nxc_); }
  size_t plane_size() const { return static_cast<size_t>(wz_ * span * span) * nyc_ * nxc_; }

  // Rows [jy0, jy1) of S for fine plane iz; `t` holds `ring` lines of T, `held` which. Sets `bad`
  // when a product reaches beyond the coarse radius.
  void plane_rows(int iz, int jy0, int jy1, double* s, double* t, int* held, bool& bad) const;
  // 2D: S rows [jy0, jy1) are A_c's rows.
  void store_rows(const double* s, int jy0, int jy1) const;
  // 3D: coarse plane jz from the S planes of its children (held in `s_ring`, keyed by `held_z`).
  void coarse_plane(int jz, double* s_ring, int* held_z, double* t, int* held, bool& bad) const;

 private:
  void x_stage(int iy, int iz, double* t) const;
  void identity_rows(int line0, int line1) const;
  // Where row jy of S's block (dz, Ky - Jy, Kx - Jx) starts.
  int64_t s_row(int dzi, int oy, int ox, int jy) const {
    return ((static_cast<int64_t>(dzi) * span + oy + reach) * span + ox + reach) * nyc_ * nxc_ +
           static_cast<int64_t>(jy) * nxc_;
  }

  const StencilOperator<Dim>& fine_;
  const std::array<AxisInterpolation, Dim>& p_;
  StencilOperator<Dim>& coarse_;
  int rf_, wf_, wz_, rc_, nxf_, nyf_, nzf_, nxc_;
  int64_t nyc_;
  std::vector<const Field<Dim>*> term_field_;  // A(p, p + d) = term_field_[d][p + term_shift_[d]]
  std::vector<int64_t> term_shift_;
  std::vector<std::vector<Scatter>> scatter_;  // per dx
};

template <int Dim>
GalerkinStages<Dim>::GalerkinStages(const StencilOperator<Dim>& fine,
                                    const std::array<AxisInterpolation, Dim>& p, StencilOperator<Dim>& coarse)
    : fine_(fine), p_(p), coarse_(coarse) {
  rf_ = fine.radius();
  wf_ = 2 * rf_ + 1;
  wz_ = Dim == 3 ? wf_ : 1;
  rc_ = coarse.radius();
  nxf_ = fine.layout().n[0];
  nyf_ = fine.layout().n[1];
  nzf_ = Dim == 3 ? fine.layout().n[Dim - 1] : 1;
  nxc_ = coarse.layout().n[0];
  nyc_ = coarse.layout().n[1];
  // Where A(p, p + d) lives for each offset d of the cube: a stored (forward) term at p, or the
  // backward term's coefficient at p + d. Either way a pointer shift from p.
  for_each_offset<Dim>(rf_, [&](const Index<Dim>& d) {
    const int forward = fine.term_of(d);
    Index<Dim> back;
    for (int a = 0; a < Dim; ++a) back[a] = -d[a];
    term_field_.push_back(&fine.coefficients(forward >= 0 ? forward : fine.term_of(back)));
    term_shift_.push_back(forward >= 0 ? 0 : fine.layout().shift(d));
  });
  const AxisInterpolation& px = p[0];
  scatter_.resize(static_cast<size_t>(wf_));
  for (int dx = -rf_; dx <= rf_; ++dx)
    for (int ix = std::max(0, -dx); ix < std::min(nxf_, nxf_ - dx); ++ix) {
      const auto jx = static_cast<size_t>(ix), kx = static_cast<size_t>(ix + dx);
      const double wj[2] = {px.w_left[jx], px.w_right[jx]}, wk[2] = {px.w_left[kx], px.w_right[kx]};
      for (int bj = 0; bj < 2; ++bj)
        for (int bk = 0; bk < 2; ++bk) {
          const int offset = px.left[kx] + bk - px.left[jx] - bj;
          const double w = wj[bj] * wk[bk];
          if (w == 0) continue;
          PDEGEN_CHECK(offset >= -reach && offset <= reach, "Galerkin x-stage offset {} beyond {}", offset,
                       reach);
          scatter_[static_cast<size_t>(dx + rf_)].push_back(
              {ix, (offset + reach) * nxc_ + px.left[jx] + bj, w});
        }
    }
}

template <int Dim>
void GalerkinStages<Dim>::x_stage(int iy, int iz, double* t) const {
  std::fill(t, t + line_size(), 0.0);
  const int line = iy + nyf_ * iz;
  for (int dzi = 0; dzi < wz_; ++dzi) {
    const int dz = Dim == 3 ? dzi - rf_ : 0;
    if (iz + dz < 0 || iz + dz >= nzf_) continue;
    for (int dy = -rf_; dy <= rf_; ++dy) {
      if (iy + dy < 0 || iy + dy >= nyf_) continue;
      double* tr = t + (dzi * wf_ + dy + rf_) * span * nxc_;
      for (int dx = -rf_; dx <= rf_; ++dx) {
        const auto d = static_cast<size_t>((dzi * wf_ + dy + rf_) * wf_ + dx + rf_);
        const double* a = term_field_[d]->line(line) + term_shift_[d];
        for (const Scatter& e : scatter_[static_cast<size_t>(dx + rf_)]) tr[e.place] += e.weight * a[e.ix];
      }
    }
  }
}

template <int Dim>
void GalerkinStages<Dim>::plane_rows(int iz, int jy0, int jy1, double* s, double* t, int* held,
                                     bool& bad) const {
  const AxisInterpolation& py = p_[1];
  std::fill(held, held + ring, -1);
  for (int dzi = 0; dzi < wz_; ++dzi)
    for (int oy = -reach; oy <= reach; ++oy)
      for (int ox = -reach; ox <= reach; ++ox)
        std::fill(s + s_row(dzi, oy, ox, jy0), s + s_row(dzi, oy, ox, jy1), 0.0);
  const int* ly = py.left.data();
  for (int jy = jy0; jy < jy1; ++jy) {
    const auto sy = static_cast<size_t>(jy);
    for (int c = py.child_begin[sy]; c < py.child_begin[sy + 1]; ++c) {
      const int iy = py.child[static_cast<size_t>(c)];
      const double wy = py.child_weight[static_cast<size_t>(c)];
      double* ti = t + static_cast<size_t>(iy % ring) * line_size();
      if (held[iy % ring] != iy) {
        held[iy % ring] = iy;
        x_stage(iy, iz, ti);
      }
      for (int dzi = 0; dzi < wz_; ++dzi)
        for (int dy = -rf_; dy <= rf_; ++dy) {
          const int ky = iy + dy;
          if (ky < 0 || ky >= nyf_) continue;
          const double* tr = ti + (dzi * wf_ + dy + rf_) * span * nxc_;
          const double wk[2] = {py.w_left[static_cast<size_t>(ky)], py.w_right[static_cast<size_t>(ky)]};
          for (int bk = 0; bk < 2; ++bk) {
            const double w = wy * wk[bk];
            const int oy = ly[ky] + bk - jy;
            if (w == 0) continue;
            if (oy < -rc_ || oy > rc_) {
              bad = true;
              continue;
            }
            for (int ox = -reach; ox <= reach; ++ox) {
              double* cr = s + s_row(dzi, oy, ox, jy);
              const double* src = tr + (ox + reach) * nxc_;
#pragma omp simd
              for (int jx = 0; jx < nxc_; ++jx) cr[jx] += w * src[jx];
            }
          }
          if (rc_ < reach)  // a 9-point result: the product must not reach 2 coarse nodes along x
            for (int jx = 0; jx < nxc_; ++jx)
              if (tr[jx] != 0 || tr[(span - 1) * nxc_ + jx] != 0) bad = true;
        }
    }
  }
}

template <int Dim>
void GalerkinStages<Dim>::identity_rows(int line0, int line1) const {
  for (int l = line0; l < line1; ++l) {  // Dirichlet rows: the identity (P gave them nothing)
    double* diag = coarse_.coefficients(0).line(l);
    diag[0] = 1;
    diag[nxc_ - 1] = 1;
  }
}

template <int Dim>
void GalerkinStages<Dim>::store_rows(const double* s, int jy0, int jy1) const {
  for (int jy = jy0; jy < jy1; ++jy) {
    for (int oy = -reach; oy <= reach; ++oy)
      for (int ox = -reach; ox <= reach; ++ox) {
        Index<Dim> o{};
        o[0] = ox;
        o[1] = oy;
        const int k = coarse_.term_of(o);
        if (k < 0) continue;  // backward (stored at the neighbour) or beyond the radius
        const double* src = s + s_row(0, oy, ox, jy);
        std::copy(src, src + nxc_, coarse_.coefficients(k).line(jy));
      }
    identity_rows(jy, jy + 1);
  }
}

template <int Dim>
void GalerkinStages<Dim>::coarse_plane(int jz, double* s_ring, int* held_z, double* t, int* held,
                                       bool& bad) const {
  const AxisInterpolation& pz = p_[Dim - 1];
  const auto sz = static_cast<size_t>(jz);
  for (int c = pz.child_begin[sz]; c < pz.child_begin[sz + 1]; ++c) {
    const int iz = pz.child[static_cast<size_t>(c)];
    const double wz = pz.child_weight[static_cast<size_t>(c)];
    double* s = s_ring + static_cast<size_t>(iz % z_ring) * plane_size();
    if (held_z[iz % z_ring] != iz) {
      held_z[iz % z_ring] = iz;
      plane_rows(iz, 0, static_cast<int>(nyc_), s, t, held, bad);
    }
    for (int dzi = 0; dzi < wz_; ++dzi) {
      const int kz = iz + dzi - rf_;
      if (kz < 0 || kz >= nzf_) continue;
      const double wk[2] = {pz.w_left[static_cast<size_t>(kz)], pz.w_right[static_cast<size_t>(kz)]};
      for (int bk = 0; bk < 2; ++bk) {
        const double w = wz * wk[bk];
        const int oz = pz.left[static_cast<size_t>(kz)] + bk - jz;
        if (w == 0) continue;
        if (oz < -rc_ || oz > rc_) {
          bad = true;
          continue;
        }
        for (int oy = -reach; oy <= reach; ++oy)
          for (int ox = -reach; ox <= reach; ++ox) {
            Index<Dim> o{};
            o[0] = ox;
            o[1] = oy;
            o[Dim - 1] = oz;
            const int k = coarse_.term_of(o);
            if (k < 0) continue;
            for (int jy = 0; jy < nyc_; ++jy) {
              double* cr = coarse_.coefficients(k).line(static_cast<int>(jy + nyc_ * jz));
              const double* src = s + s_row(dzi, oy, ox, static_cast<int>(jy));
#pragma omp simd
              for (int jx = 0; jx < nxc_; ++jx) cr[jx] += w * src[jx];
            }
          }
      }
    }
  }
  identity_rows(static_cast<int>(nyc_ * jz), static_cast<int>(nyc_ * (jz + 1)));
}

}  // namespace

template <int Dim>
StencilOperator<Dim> GridTransfer<Dim>::galerkin(const StencilOperator<Dim>& fine, bool threads) const {
  // Nested multilinear transfer keeps a radius-1 operator radius 1. Otherwise coarse nodes J and K
  // couple when fine nodes within the fine stencil's reach lie in both hats' open supports (2H wide
  // per axis): for a radius-1 A, |X_J - X_K| < 2H + h < 3H; for a radius-2 A the alignment of the
  // two grids keeps it below 3H too. So A_c reaches 2 coarse nodes; every stage checks it and
  // throws otherwise.
  const int rc = (fine.radius() == 1 && nested()) ? 1 : 2;
  StencilOperator<Dim> coarse(coarse_, rc);
  const GalerkinStages<Dim> stages(fine, p_, coarse);
  const int planes = Dim == 3 ? coarse_.n[Dim - 1] : coarse_.n[1];  // 2D: coarse lines
  const int blocks = std::min(planes, 64);
  std::vector<char> bad(static_cast<size_t>(blocks), 0);
  // 2D: one S for all tasks (each writes its own rows); 3D: a ring of S planes per task.
  std::vector<double> s_shared(Dim == 2 ? stages.plane_size() : 0);
#pragma omp parallel if (threads && coarse_.worth_threads())
  {
    std::vector<double> t(ring * stages.line_size());
    int held[ring];
    std::vector<double> s_ring(Dim == 3 ? z_ring * stages.plane_size() : 0);
    int held_z[z_ring];
    std::fill(held_z, held_z + z_ring, -1);
#pragma omp for schedule(static)
    for (int block = 0; block < blocks; ++block) {
      const int first = block * planes / blocks, last = (block + 1) * planes / blocks;
      bool block_bad = false;
      if constexpr (Dim == 2) {
        // S is indexed by the coarse line: this task's rows of it are its rows of A_c.
        stages.plane_rows(0, first, last, s_shared.data(), t.data(), held, block_bad);
        stages.store_rows(s_shared.data(), first, last);
      } else {
        for (int jz = first; jz < last; ++jz)
          stages.coarse_plane(jz, s_ring.data(), held_z, t.data(), held, block_bad);
      }
      bad[static_cast<size_t>(block)] = block_bad;
    }
  }
  for (char b : bad) PDEGEN_CHECK(!b, "Galerkin product reaches beyond the coarse stencil radius {}", rc);
  return coarse;
}

template StencilOperator<2> GridTransfer<2>::galerkin(const StencilOperator<2>&, bool) const;
template StencilOperator<3> GridTransfer<3>::galerkin(const StencilOperator<3>&, bool) const;

}  // namespace pdegen::physics

// The inverse map's residual loss (see inverse_residual.hpp).
#include "physics/inverse_residual.hpp"

#include <vector>

#include "physics/poisson_loss.hpp"
#include "physics/q1_kernels.hpp"

namespace pdegen {

namespace {

// dJ/dnu at every node for the weights w: sum_e sum_q |J| N_k(q) grad u_q . grad w_q.
template <int Dim>
void coefficient_gradient_dim(const double* u, const double* w, std::span<const int64_t> extents, double* g) {
  constexpr int n = q1::nodes<Dim>;
  long count[Dim], e[Dim] = {};
  double h[Dim];
  int64_t total = 1, elements = 1;
  for (int d = 0; d < Dim; ++d) {
    count[d] = static_cast<long>(extents[static_cast<size_t>(d)]);
    h[d] = 1.0 / static_cast<double>(count[d] - 1);
    total *= count[d];
    elements *= count[d] - 1;
  }
  for (int64_t i = 0; i < total; ++i) g[i] = 0;
  const double detj = q1::jacobian<Dim>(h);
  for (int64_t k = 0; k < elements; ++k) {
    int64_t rest = k;
    for (int d = 0; d < Dim; ++d) e[d] = static_cast<long>(rest % (count[d] - 1)), rest /= count[d] - 1;
    long idx[n];
    q1::element_nodes<Dim>(e, count, idx);
    double ue[n], we[n];
    for (int a = 0; a < n; ++a) ue[a] = u[idx[a]], we[a] = w[idx[a]];
    for (int q = 0; q < n; ++q) {
      double gu[Dim], gw[Dim], dot = 0;
      q1::gradient_at<Dim>(q, ue, h, gu);
      q1::gradient_at<Dim>(q, we, h, gw);
      for (int d = 0; d < Dim; ++d) dot += gu[d] * gw[d];
      for (int a = 0; a < n; ++a) g[idx[a]] += detj * q1::tables<Dim>.N[q][a] * dot;
    }
  }
}

void coefficient_gradient(const double* u, const double* w, std::span<const int64_t> extents, double* g) {
  if (extents.size() == 3)
    coefficient_gradient_dim<3>(u, w, extents, g);
  else
    coefficient_gradient_dim<2>(u, w, extents, g);
}

// One sample: J, and with ds its gradient.
double sample_residual(const float* u32, const float* s, std::span<const int64_t> extents, double source,
                       double grad_scale, float* ds) {
  int64_t total = 1;
  for (int64_t e : extents) total *= e;
  const int64_t nx = extents[0], lines = total / nx;
  const auto n = static_cast<size_t>(total);
  std::vector<double> u(n), nu(n), r(n), f(n), g_energy(n);
  for (size_t i = 0; i < n; ++i) u[i] = u32[i];
  nodal_coefficient(s, total, nu.data());
  apply_stiffness(nu.data(), u.data(), r.data(), extents);
  load_vector(source, extents, f.data());
  // E = u^T K(nu) u = sum_k nu_k G_k, G = dE/dnu (the weights of w = u).
  coefficient_gradient(u.data(), u.data(), extents, g_energy.data());
  double a = 0, energy = 0;
  for (size_t i = 0; i < n; ++i) energy += nu[i] * g_energy[i];
  for (int64_t l = 0; l < lines; ++l)
    for (int64_t x = 0; x < nx; ++x) {
      const auto i = static_cast<size_t>(l * nx + x);
      const double ri = x > 0 && x < nx - 1 ? r[i] - f[i] : 0.0;
      a += ri * ri;
      r[i] = 2 * ri;  // w = dA/dr
    }
  if (ds) {
    std::vector<double> g_residual(n);
    coefficient_gradient(u.data(), r.data(), extents, g_residual.data());
    const double e2 = energy * energy, e3 = e2 * energy;
    for (size_t i = 0; i < n; ++i)
      ds[i] = static_cast<float>(grad_scale * nu[i] * (g_residual[i] / e2 - 2 * a * g_energy[i] / e3));
  }
  return a / (energy * energy);
}

}  // namespace

double inverse_residual(const float* u, const float* s, int64_t samples, std::span<const int64_t> extents,
                        double source, double grad_scale, float* ds, std::vector<double>* per_sample) {
  int64_t total = 1;
  for (int64_t e : extents) total *= e;
  std::vector<double> j(static_cast<size_t>(samples));
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < samples; ++b)
    j[static_cast<size_t>(b)] = sample_residual(u + b * total, s + b * total, extents, source, grad_scale,
                                                ds ? ds + b * total : nullptr);
  double sum = 0;
  for (double v : j) sum += v;
  if (per_sample) *per_sample = j;
  return sum;
}

}  // namespace pdegen

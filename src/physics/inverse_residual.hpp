// The data-free loss of the inverse map u -> log nu: the residual of the forward problem's Q1
// system evaluated with the observed u and the predicted coefficient nu = exp(s), relative to the
// energy the coefficient dissipates with that u,
//   J(s) = A / E^2,   A = sum over the free nodes of r_i^2,   r = K(nu) u - F,   E = u^T K(nu) u,
// free = every node but the x = 0 and x = 1 planes (as PoissonLoss's residual). A alone is
// homogeneous of degree 2 in nu and smallest at nu -> 0; J is of degree 0 (for f = 0), so only the
// pinned inflow values fix the scale (docs/theory.md, "The inverse map"). r and E are linear in nu:
// with w = 2 r on the free nodes, dA/dnu_k = sum over elements and Gauss points of |J| N_k(q) grad u_q
// . grad w_q, and dE/dnu_k the same with w = u; dJ/ds_k = nu_k (dA/dnu_k / E^2 - 2 A dE/dnu_k / E^3).
// The arithmetic is fp64 on the host, one sample per OpenMP thread (bitwise the same on any count).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace pdegen {

// For `samples` fields of the grid `extents` (node counts, x first): u (observed) and s = log nu
// (predicted), each `samples` x prod(extents) values, x fastest. Returns the sum over samples of J;
// with `ds`, ds = grad_scale * dJ/ds; with `per_sample`, each J.
double inverse_residual(const float* u, const float* s, int64_t samples, std::span<const int64_t> extents,
                        double source, double grad_scale, float* ds, std::vector<double>* per_sample);

}  // namespace pdegen

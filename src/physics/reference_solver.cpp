// The poisson2d reference solver: Q1 assembly with eliminated Dirichlet columns, and conjugate
// gradients preconditioned by a multigrid V-cycle (see reference_solver.hpp).
#include "physics/reference_solver.hpp"

#include <omp.h>

#include <cmath>
#include <exception>
#include <memory>
#include <vector>

#include "core/allocator.hpp"
#include "core/error.hpp"
#include "core/timer.hpp"
#include "physics/q1_kernels.hpp"

namespace pdegen::physics {

Poisson2DSolver::Poisson2DSolver(int n, const SolverOptions& options, bool threads)
    : n_(n), options_(options), threads_(threads), mg_(n, n, threads, options.multigrid) {
  PDEGEN_CHECK(n >= 3, "the reference solver needs at least 3 nodes per axis, got {}", n);
  PDEGEN_CHECK(options.tolerance > 0, "solver tolerance must be positive, got {}", options.tolerance);
  PDEGEN_CHECK(options.max_iterations >= 1, "max_iterations must be >= 1, got {}", options.max_iterations);
  const GridLayout& g = mg_.fine_operator().layout();
  for (Field* f : {&b_, &w_, &r_, &z_, &p_, &q_, &inv_diag_}) *f = Field(g);
  nu_.resize(static_cast<size_t>(g.nodes()));
}

void Poisson2DSolver::assemble(const double* log_nu, const Source& f) {
  StencilOperator& a = mg_.fine_operator();
  const GridLayout& g = a.layout();
  const bool threads = threads_ && g.worth_threads();
  const int n = n_;
  const double h = 1.0 / (n - 1);
  // nu and f must be finite (and nu > 0) for K to be SPD; the first bad node is reported after the
  // parallel loop, which must not throw.
  std::vector<int> first_bad(static_cast<size_t>(n), -1);
  for_rows(n, threads, [&](int iy) {
    for (int ix = n - 1; ix >= 0; --ix) {
      const auto node = static_cast<size_t>(int64_t{iy} * n + ix);
      nu_[node] = std::exp(log_nu[node]);
      if (!(std::isfinite(nu_[node]) && nu_[node] > 0 && std::isfinite(f.at(static_cast<int64_t>(node)))))
        first_bad[static_cast<size_t>(iy)] = ix;
    }
  });
  for (int iy = 0; iy < n; ++iy) {
    const int ix = first_bad[static_cast<size_t>(iy)];
    if (ix < 0) continue;
    const int64_t node = int64_t{iy} * n + ix;
    PDEGEN_THROW(
        "reference solve: node ({}, {}) has log nu = {} and f = {}; nu = exp(log nu) must be finite and "
        "positive and f finite",
        ix, iy, log_nu[node], f.at(node));
  }
  a.set_zero();
  b_.set_zero();
  // Stored terms (forward offsets) of the 9-point stencil, in element-local node numbering:
  // local node a = (a & 1, a >> 1) relative to the element's lower-left node.
  const int east = a.term_of(1, 0), north = a.term_of(0, 1), north_east = a.term_of(1, 1),
            north_west = a.term_of(-1, 1);
  auto is_free = [n](int ix) { return ix != 0 && ix != n - 1; };
  auto element_row = [&](int ey) {
    for (int ex = 0; ex < n - 1; ++ex) {
      long idx[4];
      q1::element_nodes(ex, ey, n, idx);
      double nu_a[4], f_a[4], lift[4], nu_q[4], f_q[4], k[16], load[4];
      for (int l = 0; l < 4; ++l) {
        nu_a[l] = nu_[static_cast<size_t>(idx[l])];
        f_a[l] = f.at(idx[l]);
        lift[l] = (ex + (l & 1)) == 0 ? 1.0 : 0.0;  // u = 1 on x = 0, u = 0 on x = 1
      }
      q1::gauss_values(nu_a, nu_q);
      q1::gauss_values(f_a, f_q);
      q1::element_matrix(nu_q, h, h, k);
      q1::element_load(f_q, h, h, load);
      bool free[4];
      for (int l = 0; l < 4; ++l) free[l] = is_free(ex + (l & 1));
      for (int l = 0; l < 4; ++l) {
        if (!free[l]) continue;
        double rhs = load[l];
        for (int m = 0; m < 4; ++m) rhs -= k[l * 4 + m] * lift[m];
        const int ix = ex + (l & 1), iy = ey + (l >> 1);
        b_(ix, iy) += rhs;
        a.coefficients(0)(ix, iy) += k[l * 4 + l];
      }
      // Couplings between free nodes only: a Dirichlet node's row and column are eliminated.
      auto couple = [&](int from, int to, int term) {
        if (free[from] && free[to])
          a.coefficients(term)(ex + (from & 1), ey + (from >> 1)) += k[from * 4 + to];
      };
      couple(0, 1, east);
      couple(2, 3, east);
      couple(0, 2, north);
      couple(1, 3, north);
      couple(0, 3, north_east);
      couple(1, 2, north_west);
    }
  };
  // Element row ey writes node rows ey and ey + 1: the n - 1 element rows go even ones first, then
  // odd ones ((n - parity) / 2 of each), so rows running together never write the same node row.
  for (int parity = 0; parity < 2; ++parity)
    for_rows((n - parity) / 2, threads, [&](int t) { element_row(2 * t + parity); });
  for (int iy = 0; iy < n; ++iy) {  // the eliminated Dirichlet rows: identity, zero right-hand side
    a.coefficients(0)(0, iy) = 1;
    a.coefficients(0)(n - 1, iy) = 1;
  }
}

void Poisson2DSolver::precondition(const Field& r, Field& z) {
  const GridLayout& g = r.layout();
  const bool threads = threads_ && g.worth_threads();
  switch (options_.preconditioner) {
    case Preconditioner::multigrid:
      mg_.apply(r, z);
      return;
    case Preconditioner::jacobi:
    case Preconditioner::none: {
      const bool jacobi = options_.preconditioner == Preconditioner::jacobi;
      for_rows(g.ny, threads, [&](int iy) {
        const double* rr = r.row(iy);
        const double* inv = inv_diag_.row(iy);
        double* zr = z.row(iy);
        for (int ix = 0; ix < g.nx; ++ix) zr[ix] = jacobi ? inv[ix] * rr[ix] : rr[ix];
      });
      return;
    }
  }
}

double Poisson2DSolver::true_residual_norm() {
  const GridLayout& g = r_.layout();
  const bool threads = threads_ && g.worth_threads();
  mg_.fine_operator().residual(b_, w_, r_, threads);
  return std::sqrt(dot(r_, r_, threads));
}

SolveReport Poisson2DSolver::solve(const double* log_nu, const Source& f, double* u) {
  Timer timer;
  SolveReport report;
  assemble(log_nu, f);
  const StencilOperator& a = mg_.fine_operator();
  const GridLayout& g = a.layout();
  const bool threads = threads_ && g.worth_threads();
  if (options_.preconditioner == Preconditioner::multigrid) mg_.setup();
  if (options_.preconditioner == Preconditioner::jacobi)
    for_rows(g.ny, threads, [&](int iy) {
      const double* d = a.diagonal().row(iy);
      double* inv = inv_diag_.row(iy);
      for (int ix = 0; ix < g.nx; ++ix) inv[ix] = 1 / d[ix];
    });
  report.setup_seconds = timer.seconds();

  // CG on A w = b from w = 0, so the initial residual is b = F - K u_0 on the free nodes.
  w_.set_zero();
  const double norm0 = std::sqrt(dot(b_, b_, threads));
  const double target = options_.tolerance * norm0;
  double residual = norm0;
  bool converged = norm0 == 0;
  double rz = 0;
  auto restart = [&] {  // search direction from the current residual r_
    precondition(r_, z_);
    rz = dot(r_, z_, threads);
    PDEGEN_CHECK(rz > 0, "preconditioner is not positive definite ((r, Br) = {:.3e})", rz);
    for_rows(g.ny, threads, [&](int iy) {
      const double* zr = z_.row(iy);
      double* pr = p_.row(iy);
      for (int ix = 0; ix < g.nx; ++ix) pr[ix] = zr[ix];
    });
  };
  if (!converged) {
    residual = true_residual_norm();
    restart();
  }
  while (!converged && report.iterations < options_.max_iterations) {
    ++report.iterations;
    a.apply(p_, q_, threads);
    const double pq = dot(p_, q_, threads);
    PDEGEN_CHECK(pq > 0, "operator is not positive definite ((p, Ap) = {:.3e})", pq);
    const double alpha = rz / pq;
    const double rr = sum_rows(g.ny, threads, [&](int iy) {
      const double* pr = p_.row(iy);
      const double* qr = q_.row(iy);
      double* wr = w_.row(iy);
      double* res = r_.row(iy);
      double s = 0;
      for (int ix = 0; ix < g.nx; ++ix) {
        wr[ix] += alpha * pr[ix];
        res[ix] -= alpha * qr[ix];
        s += res[ix] * res[ix];
      }
      return s;
    });
    residual = std::sqrt(rr);
    if (residual <= target) {
      // CG's recursion drifts from b - A w in floating point: trust only the recomputed residual,
      // and continue from it if it is not small enough yet.
      residual = true_residual_norm();
      converged = residual <= target;
      if (!converged) restart();
      continue;
    }
    precondition(r_, z_);
    const double rz_next = dot(r_, z_, threads);
    const double beta = rz_next / rz;
    rz = rz_next;
    for_rows(g.ny, threads, [&](int iy) {
      const double* zr = z_.row(iy);
      double* pr = p_.row(iy);
      for (int ix = 0; ix < g.nx; ++ix) pr[ix] = zr[ix] + beta * pr[ix];
    });
  }
  if (!converged) residual = true_residual_norm();
  report.relative_residual = norm0 > 0 ? residual / norm0 : 0.0;
  report.seconds = timer.seconds();
  if (!converged)
    PDEGEN_THROW(
        "reference solve at {}^2 did not converge: relative residual {:.3e} after {} iterations (tolerance "
        "{:.1e})",
        n_, report.relative_residual, report.iterations, options_.tolerance);
  // u = w + lift; w is zero on the Dirichlet columns.
  for_rows(n_, threads, [&](int iy) {
    const double* wr = w_.row(iy);
    double* out = u + int64_t{iy} * n_;
    for (int ix = 0; ix < n_; ++ix) out[ix] = wr[ix];
    out[0] = 1;
    out[n_ - 1] = 0;
  });
  return report;
}

SolveReport solve_poisson2d(const double* log_nu, const Source& f, int n, double* u,
                            const SolverOptions& options) {
  Poisson2DSolver solver(n, options);
  return solver.solve(log_nu, f, u);
}

namespace {
// The solver's fields (fp64, halo-padded) come from the caching allocator, whose blocks are reused
// only for an exact size match. Training never asks for these sizes, so blocks left cached after a
// batch of reference solves (230 MiB at 1024^2) would stay resident through the training run and
// set its peak RSS: once a batch is solved they go back to the system. Emptying the cache also drops
// any other cached blocks, which costs only fresh page faults at their next allocation.
void release_solver_memory() { CachingAllocator::host().empty_cache(); }
}  // namespace

std::vector<SolveReport> solve_poisson2d_batch(const Tensor& log_nu, double source, Tensor& u,
                                               const SolverOptions& options) {
  PDEGEN_CHECK(log_nu.rank() == 4 && log_nu.dim(1) == 1 && log_nu.dim(2) == log_nu.dim(3),
               "log nu must be [b, 1, n, n], got {}", log_nu.shape().str());
  PDEGEN_CHECK(log_nu.dtype() == DType::f32 && log_nu.is_plain() && log_nu.device() == Device::cpu,
               "log nu must be a plain fp32 host tensor, got {}", log_nu.describe());
  PDEGEN_CHECK(u.shape() == log_nu.shape(), "solution shape {} differs from log nu's {}", u.shape().str(),
               log_nu.shape().str());
  PDEGEN_CHECK(
      (u.dtype() == DType::f32 || u.dtype() == DType::f64) && u.is_plain() && u.device() == Device::cpu,
      "solution must be a plain fp32 or fp64 host tensor, got {}", u.describe());
  const int64_t batch = log_nu.dim(0);
  const int n = static_cast<int>(log_nu.dim(3));
  const int64_t nodes = int64_t{n} * n;
  std::vector<SolveReport> reports(static_cast<size_t>(batch));
  const bool per_sample = batch > 1 && nodes <= batch_sample_parallel_max_nodes && omp_get_max_threads() > 1;

  // Solves one sample with `solver`, converting its input and output.
  auto run = [&](Poisson2DSolver& solver, int64_t sample, std::vector<double>& in, std::vector<double>& out) {
    const float* src = log_nu.data<float>() + sample * nodes;
    for (int64_t i = 0; i < nodes; ++i) in[static_cast<size_t>(i)] = src[i];
    double* dst64 = u.dtype() == DType::f64 ? u.data<double>() + sample * nodes : out.data();
    reports[static_cast<size_t>(sample)] = solver.solve(in.data(), Source::constant(source), dst64);
    if (u.dtype() == DType::f32) {
      float* dst = u.data<float>() + sample * nodes;
      for (int64_t i = 0; i < nodes; ++i) dst[i] = static_cast<float>(out[static_cast<size_t>(i)]);
    }
  };

  if (!per_sample) {
    {
      Poisson2DSolver solver(n, options, /*threads=*/true);
      std::vector<double> in(static_cast<size_t>(nodes)), out(static_cast<size_t>(nodes));
      for (int64_t s = 0; s < batch; ++s) run(solver, s, in, out);
    }
    release_solver_memory();
    return reports;
  }
  // One solver per thread. Exceptions must not leave the parallel region (and every thread must
  // reach the worksharing loop), so the first one is kept and rethrown after it.
  std::exception_ptr failure;
  auto keep_first = [&failure] {
#pragma omp critical(pdegen_reference_solver_failure)
    if (!failure) failure = std::current_exception();
  };
#pragma omp parallel
  {
    std::unique_ptr<Poisson2DSolver> solver;
    std::vector<double> in, out;
    try {
      solver = std::make_unique<Poisson2DSolver>(n, options, /*threads=*/false);
      in.resize(static_cast<size_t>(nodes));
      out.resize(static_cast<size_t>(nodes));
    } catch (...) {
      keep_first();
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t s = 0; s < batch; ++s) {
      if (!solver) continue;
      try {
        run(*solver, s, in, out);
      } catch (...) {
        keep_first();
      }
    }
  }
  release_solver_memory();
  if (failure) std::rethrow_exception(failure);
  return reports;
}

}  // namespace pdegen::physics

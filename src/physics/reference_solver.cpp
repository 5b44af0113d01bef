// The poisson2d reference solver: Q1 assembly with eliminated Dirichlet columns, and conjugate
// gradients preconditioned by a multigrid V-cycle (see reference_solver.hpp).
#include "physics/reference_solver.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "core/allocator.hpp"
#include "core/error.hpp"
#include "core/timer.hpp"
#include "physics/q1_kernels.hpp"

namespace pdegen::physics {

namespace {

// The node of a flat index (x fastest) on the n^Dim grid, as text for messages.
template <int Dim>
std::string node_name(int64_t node, int n) {
  std::string out = "(";
  for (int d = 0; d < Dim; ++d, node /= n) out += fmt::format("{}{}", d ? ", " : "", node % n);
  return out + ")";
}

// Element-local node a sits at offset bit d of a along axis d (x = bit 0), as in q1_kernels.hpp.
template <int Dim>
Index<Dim> local_offset(int a) {
  Index<Dim> o;
  for (int d = 0; d < Dim; ++d) o[d] = (a >> d) & 1;
  return o;
}

}  // namespace

template <int Dim>
PoissonSolver<Dim>::PoissonSolver(int n, const SolverOptions& options, bool threads)
    : n_(n),
      options_(options),
      threads_(threads),
      mg_(
          [n] {
            Index<Dim> nodes;
            nodes.fill(n);
            return nodes;
          }(),
          threads, options.multigrid) {
  PDEGEN_CHECK(n >= 3, "the reference solver needs at least 3 nodes per axis, got {}", n);
  PDEGEN_CHECK(options.tolerance > 0, "solver tolerance must be positive, got {}", options.tolerance);
  PDEGEN_CHECK(options.max_iterations >= 1, "max_iterations must be >= 1, got {}", options.max_iterations);
  const GridLayout<Dim>& g = mg_.fine_operator().layout();
  for (Field<Dim>* f : {&b_, &w_, &r_, &z_, &p_, &q_, &inv_diag_}) *f = Field<Dim>(g);
  nu_.resize(static_cast<size_t>(g.nodes()));
}

template <int Dim>
void PoissonSolver<Dim>::check_coefficients(const double* log_nu, const Source& f) {
  const GridLayout<Dim>& g = mg_.fine_operator().layout();
  const bool threads = threads_ && g.worth_threads();
  const int n = n_, lines = g.lines();
  // nu and f must be finite (and nu > 0) for K to be SPD; the first bad node is reported after the
  // parallel loop, which must not throw.
  std::vector<int> first_bad(static_cast<size_t>(lines), -1);
  for_lines(lines, threads, [&](int l) {
    for (int ix = n - 1; ix >= 0; --ix) {
      const auto node = static_cast<size_t>(int64_t{l} * n + ix);
      nu_[node] = std::exp(log_nu[node]);
      if (!(std::isfinite(nu_[node]) && nu_[node] > 0 && std::isfinite(f.at(static_cast<int64_t>(node)))))
        first_bad[static_cast<size_t>(l)] = ix;
    }
  });
  for (int l = 0; l < lines; ++l) {
    const int ix = first_bad[static_cast<size_t>(l)];
    if (ix < 0) continue;
    const int64_t node = int64_t{l} * n + ix;
    PDEGEN_THROW(
        "reference solve: node {} has log nu = {} and f = {}; nu = exp(log nu) must be finite and positive "
        "and f "
        "finite",
        node_name<Dim>(node, n), log_nu[node], f.at(node));
  }
}

template <int Dim>
void PoissonSolver<Dim>::assemble(const double* log_nu, const Source& f) {
  constexpr int N = q1::nodes<Dim>;
  check_coefficients(log_nu, f);
  StencilOperator<Dim>& a = mg_.fine_operator();
  const GridLayout<Dim>& g = a.layout();
  const bool threads = threads_ && g.worth_threads();
  const int n = n_;
  const double h = 1.0 / (n - 1);
  a.set_zero();
  b_.set_zero();
  // The stored (forward) term coupling local node `from` to `to`, or -1: each pair of an element's
  // nodes is one stencil offset, stored once at the node it points forward from.
  int pair_term[N][N];
  for (int from = 0; from < N; ++from)
    for (int to = 0; to < N; ++to) {
      Index<Dim> d;
      for (int k = 0; k < Dim; ++k) d[k] = local_offset<Dim>(to)[k] - local_offset<Dim>(from)[k];
      pair_term[from][to] = from != to && is_forward<Dim>(d) ? a.term_of(d) : -1;
    }
  double hs[Dim];
  for (double& v : hs) v = h;
  auto element = [&](const Index<Dim>& e) {
    Index<Dim> p[N];
    double nu_a[N], f_a[N], lift[N], nu_q[N], f_q[N], k[N * N], load[N];
    bool free[N];
    for (int l = 0; l < N; ++l) {
      int64_t flat = 0;
      for (int d = Dim - 1; d >= 0; --d) {
        p[l][d] = e[d] + local_offset<Dim>(l)[d];
        flat = flat * n + p[l][d];
      }
      nu_a[l] = nu_[static_cast<size_t>(flat)];
      f_a[l] = f.at(flat);
      lift[l] = p[l][0] == 0 ? 1.0 : 0.0;  // u = 1 on x = 0, u = 0 on x = 1
      free[l] = p[l][0] != 0 && p[l][0] != n - 1;
    }
    q1::gauss_values<Dim>(nu_a, nu_q);
    q1::gauss_values<Dim>(f_a, f_q);
    q1::element_matrix<Dim>(nu_q, hs, k);
    q1::element_load<Dim>(f_q, hs, load);
    for (int l = 0; l < N; ++l) {
      if (!free[l]) continue;
      double rhs = load[l];
      for (int m = 0; m < N; ++m) rhs -= k[l * N + m] * lift[m];
      b_(p[l]) += rhs;
      a.coefficients(0)(p[l]) += k[l * N + l];
      // Couplings between free nodes only: a Dirichlet node's row and column are eliminated.
      for (int m = 0; m < N; ++m)
        if (pair_term[l][m] >= 0 && free[m]) a.coefficients(pair_term[l][m])(p[l]) += k[l * N + m];
    }
  };
  // Element slab e (the elements between node planes e and e + 1 of the last axis) writes those two
  // planes: the n - 1 slabs go even ones first, then odd ones ((n - parity) / 2 of each), so slabs
  // running together never write the same node.
  for (int parity = 0; parity < 2; ++parity)
    for_lines((n - parity) / 2, threads, [&](int t) {
      Index<Dim> e{};
      e[Dim - 1] = 2 * t + parity;
      for (;;) {
        element(e);
        int d = 0;
        while (d < Dim - 1 && e[d] == n - 2) e[d++] = 0;
        if (d == Dim - 1) break;
        ++e[d];
      }
    });
  for (int l = 0; l < g.lines(); ++l) {  // the eliminated Dirichlet rows: identity, zero right-hand side
    double* diag = a.coefficients(0).line(l);
    diag[0] = 1;
    diag[n - 1] = 1;
  }
}

template <int Dim>
void PoissonSolver<Dim>::precondition(const Field<Dim>& r, Field<Dim>& z) {
  const GridLayout<Dim>& g = r.layout();
  const int nx = g.nx();
  const bool threads = threads_ && g.worth_threads();
  switch (options_.preconditioner) {
    case Preconditioner::multigrid:
      mg_.apply(r, z);
      return;
    case Preconditioner::jacobi:
    case Preconditioner::none: {
      const bool jacobi = options_.preconditioner == Preconditioner::jacobi;
      for_lines(g.lines(), threads, [&](int l) {
        const double* rr = r.line(l);
        const double* inv = inv_diag_.line(l);
        double* zr = z.line(l);
        for (int ix = 0; ix < nx; ++ix) zr[ix] = jacobi ? inv[ix] * rr[ix] : rr[ix];
      });
      return;
    }
  }
}

template <int Dim>
double PoissonSolver<Dim>::true_residual_norm() {
  const GridLayout<Dim>& g = r_.layout();
  const bool threads = threads_ && g.worth_threads();
  mg_.fine_operator().residual(b_, w_, r_, threads);
  return std::sqrt(dot(r_, r_, threads));
}

template <int Dim>
SolveReport PoissonSolver<Dim>::solve(const double* log_nu, const Source& f, double* u) {
  Timer timer;
  SolveReport report;
  assemble(log_nu, f);
  const StencilOperator<Dim>& a = mg_.fine_operator();
  const GridLayout<Dim>& g = a.layout();
  const bool threads = threads_ && g.worth_threads();
  const int nx = g.nx(), lines = g.lines();
  if (options_.preconditioner == Preconditioner::multigrid) mg_.setup();
  if (options_.preconditioner == Preconditioner::jacobi)
    for_lines(lines, threads, [&](int l) {
      const double* d = a.diagonal().line(l);
      double* inv = inv_diag_.line(l);
      for (int ix = 0; ix < nx; ++ix) inv[ix] = 1 / d[ix];
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
    for_lines(lines, threads, [&](int l) {
      const double* zr = z_.line(l);
      double* pr = p_.line(l);
      for (int ix = 0; ix < nx; ++ix) pr[ix] = zr[ix];
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
    const double rr = sum_lines(lines, threads, [&](int l) {
      const double* pr = p_.line(l);
      const double* qr = q_.line(l);
      double* wr = w_.line(l);
      double* res = r_.line(l);
      double s = 0;
      for (int ix = 0; ix < nx; ++ix) {
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
    for_lines(lines, threads, [&](int l) {
      const double* zr = z_.line(l);
      double* pr = p_.line(l);
      for (int ix = 0; ix < nx; ++ix) pr[ix] = zr[ix] + beta * pr[ix];
    });
  }
  if (!converged) residual = true_residual_norm();
  report.relative_residual = norm0 > 0 ? residual / norm0 : 0.0;
  report.seconds = timer.seconds();
  if (!converged)
    PDEGEN_THROW(
        "reference solve at {}^{} did not converge: relative residual {:.3e} after {} iterations (tolerance "
        "{:.1e})",
        n_, Dim, report.relative_residual, report.iterations, options_.tolerance);
  // u = w + lift; w is zero on the Dirichlet columns.
  for_lines(lines, threads, [&](int l) {
    const double* wr = w_.line(l);
    double* out = u + int64_t{l} * n_;
    for (int ix = 0; ix < n_; ++ix) out[ix] = wr[ix];
    out[0] = 1;
    out[n_ - 1] = 0;
  });
  return report;
}

template <int Dim>
SolveReport solve_poisson(const double* log_nu, const Source& f, int n, double* u,
                          const SolverOptions& options) {
  PoissonSolver<Dim> solver(n, options);
  return solver.solve(log_nu, f, u);
}

template class PoissonSolver<2>;
template class PoissonSolver<3>;
template SolveReport solve_poisson<2>(const double*, const Source&, int, double*, const SolverOptions&);
template SolveReport solve_poisson<3>(const double*, const Source&, int, double*, const SolverOptions&);

namespace {
// The solver's fields (fp64, halo-padded) come from the caching allocator, whose blocks are reused
// only for an exact size match. Training never asks for these sizes, so blocks left cached after a
// batch of reference solves (230 MiB at 1024^2) would stay resident through the training run and
// set its peak RSS: once a batch is solved they go back to the system. Emptying the cache also drops
// any other cached blocks, which costs only fresh page faults at their next allocation.
void release_solver_memory() { CachingAllocator::host().empty_cache(); }

template <int Dim>
std::vector<SolveReport> solve_batch(const Tensor& log_nu, double source, Tensor& u,
                                     const SolverOptions& options) {
  const int64_t batch = log_nu.dim(0);
  const int n = static_cast<int>(log_nu.dim(Dim + 1));
  const int64_t nodes = log_nu.numel() / std::max<int64_t>(batch, 1);
  std::vector<SolveReport> reports(static_cast<size_t>(batch));
  const bool per_sample = batch > 1 && nodes <= batch_sample_parallel_max_nodes && omp_get_max_threads() > 1;

  // Solves one sample with `solver`, converting its input and output.
  auto run = [&](PoissonSolver<Dim>& solver, int64_t sample, std::vector<double>& in,
                 std::vector<double>& out) {
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
      PoissonSolver<Dim> solver(n, options, /*threads=*/true);
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
    std::unique_ptr<PoissonSolver<Dim>> solver;
    std::vector<double> in, out;
    try {
      solver = std::make_unique<PoissonSolver<Dim>>(n, options, /*threads=*/false);
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

}  // namespace

std::vector<SolveReport> solve_poisson_batch(const Tensor& log_nu, double source, Tensor& u,
                                             const SolverOptions& options) {
  const int dims = log_nu.rank() - 2;
  bool cube = (dims == 2 || dims == 3) && log_nu.dim(1) == 1;
  for (int d = 3; cube && d < log_nu.rank(); ++d) cube = log_nu.dim(d) == log_nu.dim(2);
  PDEGEN_CHECK(cube, "log nu must be [b, 1, n, n] or [b, 1, n, n, n], got {}", log_nu.shape().str());
  PDEGEN_CHECK(log_nu.dtype() == DType::f32 && log_nu.is_plain() && log_nu.device() == Device::cpu,
               "log nu must be a plain fp32 host tensor, got {}", log_nu.describe());
  PDEGEN_CHECK(u.shape() == log_nu.shape(), "solution shape {} differs from log nu's {}", u.shape().str(),
               log_nu.shape().str());
  PDEGEN_CHECK(
      (u.dtype() == DType::f32 || u.dtype() == DType::f64) && u.is_plain() && u.device() == Device::cpu,
      "solution must be a plain fp32 or fp64 host tensor, got {}", u.describe());
  return dims == 2 ? solve_batch<2>(log_nu, source, u, options) : solve_batch<3>(log_nu, source, u, options);
}

}  // namespace pdegen::physics

// Reference-solver benchmark: multigrid-preconditioned CG on poisson2d or poisson3d KL samples
// (sigma = 1 by default), to relative residual 1e-10. Prints a markdown table per resolution
// (iterations, setup seconds, whole-solve seconds, seconds per million nodes: constant when the cost
// is linear in the node count), then optionally the batch strategies compared (--batch: one sample
// per thread vs each solve over all threads) and CG without multigrid (--compare-cg: Jacobi-
// preconditioned and plain CG iteration counts) and the smoother's parameters swept
// (--sweep-smoother: Chebyshev degree 1-3, range 4-16, at each of --sizes).
//   bench_solver [--dim 2|3] [--sizes 64,128,256,512,1024,2048] [--samples 3] [--sigma 1] [--degree 1]
//                [--range 8] [--coarsest 400] [--batch] [--compare-cg] [--sweep-smoother]
// --dim 3 defaults to --sizes 32,64,128 --samples 2.
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "config/deck.hpp"
#include "core/timer.hpp"
#include "physics/kl_sampler.hpp"
#include "physics/problem.hpp"
#include "physics/reference_solver.hpp"

using namespace pdegen;
using namespace pdegen::physics;

namespace {

struct Options {
  int dim = 2;
  std::vector<int> sizes;  // empty: the dimension's defaults
  int samples = 0;         // 0: the dimension's default
  double sigma = 1;
  SolverOptions solver;
  bool batch = false, compare_cg = false, sweep = false;
};

template <int Dim>
int64_t nodes_of(int n) {
  int64_t c = 1;
  for (int d = 0; d < Dim; ++d) c *= n;
  return c;
}

// n^Dim as text: "256^2".
template <int Dim>
std::string grid_name(int n) {
  return fmt::format("{}^{}", n, Dim);
}

// Evaluation samples 0 .. count-1 of the default deck's KL field, as fp64 arrays.
template <int Dim>
std::vector<std::vector<double>> kl_samples(int n, int count, double sigma) {
  PoissonSettings settings;
  settings.sigma = sigma;
  KlSampler<Dim> sampler(settings, n);
  std::vector<uint64_t> indices;
  for (int s = 0; s < count; ++s) indices.push_back(eval_index_base + static_cast<uint64_t>(s));
  Tensor log_nu;
  sampler.sample(1, indices, log_nu);
  const auto nodes = static_cast<size_t>(nodes_of<Dim>(n));
  std::vector<std::vector<double>> out;
  for (int s = 0; s < count; ++s) {
    const float* p = log_nu.data<float>() + static_cast<size_t>(s) * nodes;
    out.emplace_back(p, p + nodes);
  }
  return out;
}

// Per resolution: the median over the samples of the setup (assembly and multigrid setup) and of
// the whole solve, after one warm-up solve that first-touches the solver's buffers.
template <int Dim>
void scaling_table(const Options& o) {
  std::printf("| n | nodes | levels | iterations | setup s | solve s | s per Mnode | max rel. residual |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (int n : o.sizes) {
    const auto fields = kl_samples<Dim>(n, o.samples, o.sigma);
    PoissonSolver<Dim> solver(n, o.solver);
    std::vector<double> u(fields[0].size());
    solver.solve(fields[0].data(), Source::constant(0), u.data());
    std::vector<double> seconds, setup;
    int it_min = 1 << 30, it_max = 0;
    double worst = 0;
    for (const auto& f : fields) {
      const SolveReport r = solver.solve(f.data(), Source::constant(0), u.data());
      seconds.push_back(r.seconds);
      setup.push_back(r.setup_seconds);
      it_min = std::min(it_min, r.iterations);
      it_max = std::max(it_max, r.iterations);
      worst = std::max(worst, r.relative_residual);
    }
    const double nodes = static_cast<double>(nodes_of<Dim>(n)), t = bench::median(seconds);
    const std::string its = it_min == it_max ? std::to_string(it_min) : fmt::format("{}-{}", it_min, it_max);
    std::printf("| %s | %.0f | %d | %s | %.3f | %.3f | %.2f | %.1e |\n", grid_name<Dim>(n).c_str(), nodes,
                solver.multigrid_levels(), its.c_str(), bench::median(setup), t, t / (nodes / 1e6), worst);
    std::fflush(stdout);
  }
}

// Seconds for `batch` samples of n^Dim: one solver per thread (per_sample) or one for all.
template <int Dim>
double batch_seconds(int n, int batch, bool per_sample, const SolverOptions& options) {
  const auto fields = kl_samples<Dim>(n, batch, 1);
  const auto nodes = static_cast<size_t>(nodes_of<Dim>(n));
  std::vector<double> u(static_cast<size_t>(batch) * nodes);
  std::vector<double> times;
  for (int rep = 0; rep < 3; ++rep) {
    Timer timer;
    if (per_sample) {
#pragma omp parallel
      {
        PoissonSolver<Dim> solver(n, options, false);
#pragma omp for schedule(dynamic, 1)
        for (int s = 0; s < batch; ++s)
          solver.solve(fields[static_cast<size_t>(s)].data(), Source::constant(0), u.data() + s * nodes);
      }
    } else {
      PoissonSolver<Dim> solver(n, options, true);
      for (int s = 0; s < batch; ++s)
        solver.solve(fields[static_cast<size_t>(s)].data(), Source::constant(0), u.data() + s * nodes);
    }
    times.push_back(timer.seconds());
  }
  return bench::median(times);
}

template <int Dim>
void batch_table(const Options& o) {
  std::printf(
      "\n| n | batch | one sample per thread s | each solve on all threads s |\n|---:|---:|---:|---:|\n");
  const std::vector<std::pair<int, int>> cases =
      Dim == 2 ? std::vector<std::pair<int, int>>{{64, 16}, {256, 4}, {512, 2}, {1024, 2}}
               : std::vector<std::pair<int, int>>{{16, 16}, {32, 4}, {64, 2}, {128, 2}};
  for (const auto& [n, batch] : cases) {
    const double per_sample = batch_seconds<Dim>(n, batch, true, o.solver);
    const double per_solve = batch_seconds<Dim>(n, batch, false, o.solver);
    std::printf("| %s | %d | %.3f | %.3f |\n", grid_name<Dim>(n).c_str(), batch, per_sample, per_solve);
    std::fflush(stdout);
  }
}

template <int Dim>
void cg_table(const Options& o) {
  std::printf(
      "\n| n | multigrid CG iterations | Jacobi CG iterations | plain CG iterations "
      "|\n|---:|---:|---:|---:|\n");
  const std::vector<int> sizes = Dim == 2 ? std::vector<int>{33, 65, 129, 257} : std::vector<int>{17, 33, 65};
  for (int n : sizes) {
    const auto f = kl_samples<Dim>(n, 1, o.sigma)[0];
    std::vector<double> u(f.size());
    int its[3];
    const Preconditioner kinds[3] = {Preconditioner::multigrid, Preconditioner::jacobi, Preconditioner::none};
    for (int k = 0; k < 3; ++k) {
      SolverOptions options = o.solver;
      options.preconditioner = kinds[k];
      options.max_iterations = 100000;
      its[k] = PoissonSolver<Dim>(n, options).solve(f.data(), Source::constant(0), u.data()).iterations;
    }
    std::printf("| %s | %d | %d | %d |\n", grid_name<Dim>(n).c_str(), its[0], its[1], its[2]);
    std::fflush(stdout);
  }
}

// The smoother's Chebyshev degree and range at each size: iterations and median solve seconds.
template <int Dim>
void smoother_table(const Options& o) {
  std::printf("\n| n | degree | range | iterations | solve s |\n|---:|---:|---:|---:|---:|\n");
  for (int n : o.sizes) {
    const auto fields = kl_samples<Dim>(n, o.samples, o.sigma);
    std::vector<double> u(fields[0].size());
    for (int degree : {1, 2, 3})
      for (double range : {4.0, 8.0, 16.0}) {
        SolverOptions options = o.solver;
        options.multigrid.smoothing_degree = degree;
        options.multigrid.smoothing_range = range;
        PoissonSolver<Dim> solver(n, options);
        solver.solve(fields[0].data(), Source::constant(0), u.data());
        std::vector<double> seconds;
        int iterations = 0;
        for (const auto& f : fields) {
          const SolveReport r = solver.solve(f.data(), Source::constant(0), u.data());
          seconds.push_back(r.seconds);
          iterations = std::max(iterations, r.iterations);
        }
        std::printf("| %s | %d | %.0f | %d | %.3f |\n", grid_name<Dim>(n).c_str(), degree, range, iterations,
                    bench::median(seconds));
        std::fflush(stdout);
      }
  }
}

template <int Dim>
void run(const Options& o) {
  scaling_table<Dim>(o);
  if (o.batch) batch_table<Dim>(o);
  if (o.compare_cg) cg_table<Dim>(o);
  if (o.sweep) smoother_table<Dim>(o);
}

std::vector<int> parse_sizes(const char* s) {
  std::vector<int> v;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) v.push_back(std::stoi(item));
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", argv[i]);
        std::exit(2);
      }
      return argv[++i];
    };
    if (!std::strcmp(argv[i], "--dim"))
      o.dim = std::atoi(value());
    else if (!std::strcmp(argv[i], "--sizes"))
      o.sizes = parse_sizes(value());
    else if (!std::strcmp(argv[i], "--samples"))
      o.samples = std::atoi(value());
    else if (!std::strcmp(argv[i], "--sigma"))
      o.sigma = std::atof(value());
    else if (!std::strcmp(argv[i], "--degree"))
      o.solver.multigrid.smoothing_degree = std::atoi(value());
    else if (!std::strcmp(argv[i], "--range"))
      o.solver.multigrid.smoothing_range = std::atof(value());
    else if (!std::strcmp(argv[i], "--coarsest"))
      o.solver.multigrid.coarsest_nodes = std::atoi(value());
    else if (!std::strcmp(argv[i], "--batch"))
      o.batch = true;
    else if (!std::strcmp(argv[i], "--compare-cg"))
      o.compare_cg = true;
    else if (!std::strcmp(argv[i], "--sweep-smoother"))
      o.sweep = true;
    else {
      std::fprintf(stderr, "unknown option %s (see the header of tools/bench/bench_solver.cpp)\n", argv[i]);
      return 2;
    }
  }
  if (o.dim != 2 && o.dim != 3) {
    std::fprintf(stderr, "--dim must be 2 or 3, got %d\n", o.dim);
    return 2;
  }
  if (o.sizes.empty())
    o.sizes = o.dim == 2 ? std::vector<int>{64, 128, 256, 512, 1024, 2048} : std::vector<int>{32, 64, 128};
  if (o.samples <= 0) o.samples = o.dim == 2 ? 3 : 2;
  std::printf(
      "reference solver %dD: %d threads, sigma %.2f, tolerance %.0e, Chebyshev degree %d, range %.1f\n\n",
      o.dim, omp_get_max_threads(), o.sigma, o.solver.tolerance, o.solver.multigrid.smoothing_degree,
      o.solver.multigrid.smoothing_range);
  try {
    if (o.dim == 2)
      run<2>(o);
    else
      run<3>(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_solver: %s\n", e.what());
    return 1;
  }
  return 0;
}

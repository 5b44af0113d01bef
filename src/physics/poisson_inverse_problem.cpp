// The inverse map of the Poisson problems (see poisson_inverse_problem.hpp).
#include "physics/poisson_inverse_problem.hpp"

#include <cstring>

#include "physics/inverse_residual.hpp"

namespace pdegen {

namespace {

// Values per sample and x nodes per line of a plain [b, c, grid...] tensor's channel.
int64_t values_per_channel(const Tensor& t) { return t.numel() / (t.dim(0) * t.dim(1)); }

std::vector<int64_t> extents_of(const Tensor& t) {
  std::vector<int64_t> e;
  for (int d = t.rank() - 1; d >= 2; --d) e.push_back(t.dim(d));  // x first
  return e;
}

}  // namespace

template <int Dim>
PoissonInverseProblem<Dim>::PoissonInverseProblem(const ProblemConfig& config, double solver_tolerance)
    : config_(config), forward_(config, solver_tolerance) {}

template <int Dim>
Shape PoissonInverseProblem<Dim>::input_shape() const {
  Shape s = sample_shape();
  s[0] = 2;
  return s;
}

template <int Dim>
void PoissonInverseProblem<Dim>::assemble_input(const Tensor& u, const Tensor& log_nu, Tensor& input) {
  const int64_t b = u.dim(0), n = values_per_channel(u), nx = u.dim(u.rank() - 1);
  Shape shape = u.shape();
  shape[1] = 2;
  if (!input.defined() || input.shape() != shape) input = Tensor::empty(shape);
  float* in = input.data<float>();
  const float *pu = u.data<float>(), *ps = log_nu.data<float>();
  for (int64_t s = 0; s < b; ++s) {
    std::memcpy(in + 2 * s * n, pu + s * n, static_cast<size_t>(n) * sizeof(float));
    float* pin = in + (2 * s + 1) * n;
    for (int64_t i = 0; i < n; ++i) pin[i] = i % nx == 0 ? ps[s * n + i] : 0.0f;
  }
}

template <int Dim>
void PoissonInverseProblem<Dim>::sample(uint64_t seed, const std::vector<uint64_t>& global_indices,
                                        Tensor& input) const {
  Tensor log_nu;
  forward_.sample(seed, global_indices, log_nu);
  const Tensor u = forward_.reference(log_nu, nullptr);
  assemble_input(u, log_nu, input);
}

template <int Dim>
void PoissonInverseProblem<Dim>::input_from_data(const Tensor& field, const Tensor& target, uint64_t,
                                                 const std::vector<uint64_t>&, Tensor& input) const {
  assemble_input(field, target, input);
}

template <int Dim>
Tensor PoissonInverseProblem<Dim>::lift(const Tensor& v, const Tensor& input) const {
  const Tensor vh = v.to(Device::cpu), in = input.to(Device::cpu);
  Tensor s = vh.clone();
  const int64_t b = s.dim(0), n = values_per_channel(s), nx = s.dim(s.rank() - 1);
  float* ps = s.data<float>();
  const float* pin = in.data<float>();
  // s = the inflow value of the node's x line + v, and exactly the inflow value at x = 0: the
  // network predicts the change along the flow, anchored where the coefficient was measured.
  for (int64_t k = 0; k < b; ++k)
    for (int64_t i = 0; i < n; i += nx) {
      const float inflow = pin[(2 * k + 1) * n + i];
      ps[k * n + i] = inflow;
      for (int64_t x = 1; x < nx; ++x) ps[k * n + i + x] += inflow;
    }
  return s.to(v.device());
}

template <int Dim>
Tensor PoissonInverseProblem<Dim>::lift_backward(const Tensor& ds) const {
  Tensor g = ds.to(Device::cpu).clone();
  const int64_t nx = g.dim(g.rank() - 1);
  float* pg = g.data<float>();
  for (int64_t i = 0; i < g.numel(); i += nx) pg[i] = 0.0f;  // the pinned nodes are data
  return g.to(ds.device());
}

template <int Dim>
double PoissonInverseProblem<Dim>::loss(const Tensor& s, const Tensor& input, double grad_scale, Tensor* ds,
                                        std::vector<double>* per_sample) const {
  const Tensor sh = s.to(Device::cpu), in = input.to(Device::cpu);
  const int64_t b = sh.dim(0), n = values_per_channel(sh);
  // The observed u: channel 0 of the input, made contiguous per sample.
  std::vector<float> u(static_cast<size_t>(b * n));
  for (int64_t k = 0; k < b; ++k)
    std::memcpy(u.data() + k * n, in.data<float>() + 2 * k * n, static_cast<size_t>(n) * sizeof(float));
  Tensor g = ds ? Tensor::empty(sh.shape()) : Tensor();
  const std::vector<int64_t> extents = extents_of(sh);
  const double sum = inverse_residual(u.data(), sh.data<float>(), b, extents, config_.poisson.source,
                                      grad_scale, ds ? g.data<float>() : nullptr, per_sample);
  if (ds) *ds = g.to(s.device());
  return sum;
}

template <int Dim>
Tensor PoissonInverseProblem<Dim>::reference(const Tensor&, ReferenceReport*) const {
  throw NotImplemented("the inverse map's reference is the sampled coefficient: ask by sample index");
}

template <int Dim>
Tensor PoissonInverseProblem<Dim>::reference_of(uint64_t seed, const std::vector<uint64_t>& global_indices,
                                                const Tensor&, ReferenceReport* report) const {
  Tensor log_nu;
  forward_.sample(seed, global_indices, log_nu);
  if (report) {
    report->method = "the sampled coefficient (the inverse map's truth)";
    report->iterations.assign(global_indices.size(), 0);
    report->seconds = 0;
  }
  return log_nu;
}

template class PoissonInverseProblem<2>;
template class PoissonInverseProblem<3>;

}  // namespace pdegen

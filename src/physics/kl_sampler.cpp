// KlSampler: the 1D eigenfunctions tabulated at the nodes once per axis, then per sample and node
// line along x a short sum over the modes of (coefficient * phi(y_j) [* phi(z_k)]) * phi(x_i),
// vectorised along x.
#include "physics/kl_sampler.hpp"

#include "core/rng.hpp"

namespace pdegen {

template <int Dim>
KlSampler<Dim>::KlSampler(const PoissonSettings& settings, int resolution)
    : settings_(settings), n_(resolution) {
  PDEGEN_CHECK(resolution >= 2, "KL sampler needs at least 2 nodes per axis, got {}", resolution);
  PDEGEN_CHECK(settings.kl_modes >= 1, "KL sampler needs at least one mode, got {}", settings.kl_modes);
  modes_ = kl::modes<Dim>(settings.correlation_length, settings.kl_modes);
  // Every mode index is below m (kl::modes), so m eigenpairs hold every factor.
  const std::vector<kl::Eigenpair1D> pairs =
      kl::eigenpairs_1d(settings.correlation_length, settings.kl_modes);
  const size_t n = static_cast<size_t>(n_), m = modes_.size();
  const double h = 1.0 / (n_ - 1);
  for (int d = 0; d < Dim; ++d) {
    std::vector<double>& phi = phi_[static_cast<size_t>(d)];
    phi.resize(m * n);
    for (size_t k = 0; k < m; ++k) {
      const kl::Eigenpair1D& pair = pairs[static_cast<size_t>(modes_[k].index[static_cast<size_t>(d)])];
      for (size_t node = 0; node < n; ++node) phi[k * n + node] = pair(static_cast<double>(node) * h);
    }
  }
}

template <int Dim>
std::vector<double> KlSampler<Dim>::omegas(uint64_t seed, uint64_t g) const {
  std::vector<double> w(modes_.size());
  for (size_t k = 0; k < w.size(); ++k)
    w[k] = settings_.omega_max * (2 * random_uniform(seed, kl_stream(static_cast<int>(k)), g) - 1);
  return w;
}

template <int Dim>
void KlSampler<Dim>::sample(uint64_t seed, const std::vector<uint64_t>& global_indices,
                            Tensor& log_nu) const {
  const int64_t b = static_cast<int64_t>(global_indices.size()), n = n_;
  std::vector<int64_t> dims = {b, 1};
  for (int d = 0; d < Dim; ++d) dims.push_back(n);
  const Shape shape(dims.begin(), dims.end());
  if (!(log_nu.shape() == shape && log_nu.dtype() == DType::f32 && log_nu.is_plain() &&
        log_nu.device() == Device::cpu))
    log_nu = Tensor::empty(shape, DType::f32);

  // Per sample: sigma * omega_k * sqrt(prod lambda) of each mode.
  const int64_t m = static_cast<int64_t>(modes_.size());
  std::vector<double> coef(static_cast<size_t>(b * m));
  for (int64_t s = 0; s < b; ++s) {
    const std::vector<double> w = omegas(seed, global_indices[static_cast<size_t>(s)]);
    for (int64_t k = 0; k < m; ++k)
      coef[static_cast<size_t>(s * m + k)] =
          settings_.sigma * w[static_cast<size_t>(k)] * modes_[static_cast<size_t>(k)].weight;
  }

  int64_t lines_per_sample = 1;
  for (int d = 1; d < Dim; ++d) lines_per_sample *= n;
  float* out = log_nu.data<float>();
  const double* px = phi_[0].data();
#pragma omp parallel
  {
    std::vector<double> line_coef(static_cast<size_t>(m));
    double* d = line_coef.data();
#pragma omp for schedule(static)
    for (int64_t row = 0; row < b * lines_per_sample; ++row) {
      // The line's coefficient of each mode: the sample's, times phi along y, then along z.
      const int64_t s = row / lines_per_sample, line = row % lines_per_sample;
      for (int64_t k = 0; k < m; ++k) {
        double c = coef[static_cast<size_t>(s * m + k)];
        for (int64_t axis = 1, rest = line; axis < Dim; rest /= n, ++axis)
          c = c * phi_[static_cast<size_t>(axis)][static_cast<size_t>(k * n + rest % n)];
        d[k] = c;
      }
      float* dst = out + row * n;
      // Summed in mode order at every node, so a value does not depend on the thread that made it.
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) {
        double v = 0;
        for (int64_t k = 0; k < m; ++k) v += d[k] * px[k * n + i];
        dst[i] = static_cast<float>(v);
      }
    }
  }
}

template <int Dim>
void KlSampler<Dim>::sample_box(uint64_t seed, uint64_t g, const GridBox& box, float* out) const {
  PDEGEN_CHECK(box.dims() == Dim, "KL sampler box has {} axes, the grid {}", box.dims(), Dim);
  for (int a = 0; a < Dim; ++a)
    PDEGEN_CHECK(box.first[a] >= 0 && box.count[a] >= 1 && box.first[a] + box.count[a] <= n_,
                 "KL sampler box axis {}: nodes [{}, {}) outside [0, {})", a, box.first[a],
                 box.first[a] + box.count[a], n_);
  const int64_t m = static_cast<int64_t>(modes_.size()), n = n_, nx = box.count[Dim - 1];
  std::vector<double> coef(static_cast<size_t>(m));
  const std::vector<double> w = omegas(seed, g);
  for (int64_t k = 0; k < m; ++k)
    coef[static_cast<size_t>(k)] =
        settings_.sigma * w[static_cast<size_t>(k)] * modes_[static_cast<size_t>(k)].weight;
  const int64_t lines = box.numel() / nx;
  const double* px = phi_[0].data() + box.first[Dim - 1];
  // The arithmetic of sample(), term for term, so that a box equals the whole field's box.
#pragma omp parallel
  {
    std::vector<double> line_coef(static_cast<size_t>(m));
    double* d = line_coef.data();
#pragma omp for schedule(static)
    for (int64_t line = 0; line < lines; ++line) {
      for (int64_t k = 0; k < m; ++k) {
        double c = coef[static_cast<size_t>(k)];
        // Axis 1 is y (box axis Dim - 2), axis 2 is z (box axis 0 in 3D).
        for (int64_t axis = 1, rest = line; axis < Dim; ++axis) {
          const int64_t b = Dim - 1 - axis, node = box.first[b] + rest % box.count[b];
          rest /= box.count[b];
          c = c * phi_[static_cast<size_t>(axis)][static_cast<size_t>(k * n + node)];
        }
        d[k] = c;
      }
      float* dst = out + line * nx;
#pragma omp simd
      for (int64_t i = 0; i < nx; ++i) {
        double v = 0;
        for (int64_t k = 0; k < m; ++k) v += d[k] * px[k * n + i];
        dst[i] = static_cast<float>(v);
      }
    }
  }
}

template class KlSampler<2>;
template class KlSampler<3>;

}  // namespace pdegen

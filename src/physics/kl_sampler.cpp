// KlSampler2D: the 1D eigenfunctions tabulated at the nodes once, then per sample and grid row a
// short sum over the modes of (coefficient * phi(y_j)) * phi(x_i), vectorised along x.
#include "physics/kl_sampler.hpp"

#include "core/rng.hpp"

namespace pdegen {

KlSampler2D::KlSampler2D(const PoissonSettings& settings, int resolution)
    : settings_(settings), n_(resolution) {
  PDEGEN_CHECK(resolution >= 2, "KL sampler needs at least 2 nodes per axis, got {}", resolution);
  PDEGEN_CHECK(settings.kl_modes >= 1, "KL sampler needs at least one mode, got {}", settings.kl_modes);
  modes_ = kl::modes_2d(settings.correlation_length, settings.kl_modes);
  const std::vector<kl::Eigenpair1D> pairs =
      kl::eigenpairs_1d(settings.correlation_length, settings.kl_modes);
  const size_t n = static_cast<size_t>(n_), m = modes_.size();
  const double h = 1.0 / (n_ - 1);
  phi_x_.resize(m * n);
  phi_y_.resize(m * n);
  for (size_t k = 0; k < m; ++k)
    for (size_t node = 0; node < n; ++node) {
      const double x = static_cast<double>(node) * h;
      phi_x_[k * n + node] = pairs[static_cast<size_t>(modes_[k].i)](x);
      phi_y_[k * n + node] = pairs[static_cast<size_t>(modes_[k].j)](x);
    }
}

std::vector<double> KlSampler2D::omegas(uint64_t seed, uint64_t g) const {
  std::vector<double> w(modes_.size());
  for (size_t k = 0; k < w.size(); ++k)
    w[k] = settings_.omega_max * (2 * random_uniform(seed, kl_stream(static_cast<int>(k)), g) - 1);
  return w;
}

void KlSampler2D::sample(uint64_t seed, const std::vector<uint64_t>& global_indices, Tensor& log_nu) const {
  const int64_t b = static_cast<int64_t>(global_indices.size()), n = n_;
  const Shape shape{b, 1, n, n};
  if (!(log_nu.shape() == shape && log_nu.dtype() == DType::f32 && log_nu.is_plain() &&
        log_nu.device() == Device::cpu))
    log_nu = Tensor::empty(shape, DType::f32);

  // Per sample and grid row j: sigma * omega_k * sqrt(lambda_ik lambda_jk) * phi_jk(y_j) of each mode.
  const int64_t m = static_cast<int64_t>(modes_.size());
  std::vector<double> row_coef(static_cast<size_t>(b * n * m));
  for (int64_t s = 0; s < b; ++s) {
    const std::vector<double> w = omegas(seed, global_indices[static_cast<size_t>(s)]);
    for (int64_t k = 0; k < m; ++k) {
      const double c = settings_.sigma * w[static_cast<size_t>(k)] * modes_[static_cast<size_t>(k)].weight;
      for (int64_t j = 0; j < n; ++j)
        row_coef[static_cast<size_t>((s * n + j) * m + k)] = c * phi_y_[static_cast<size_t>(k * n + j)];
    }
  }

  float* out = log_nu.data<float>();
  const double *px = phi_x_.data(), *rc = row_coef.data();
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < b * n; ++row) {
    float* dst = out + row * n;
    const double* d = rc + row * m;
    // Summed in mode order at every node, so a value does not depend on the thread that made it.
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      double v = 0;
      for (int64_t k = 0; k < m; ++k) v += d[k] * px[k * n + i];
      dst[i] = static_cast<float>(v);
    }
  }
}

}  // namespace pdegen

// The data losses (see data_loss.hpp).
#include "data/data_loss.hpp"

#include <cmath>

namespace pdegen::data {

namespace {

// One sample's loss and, with du, its gradient times `scale`.
double sample_loss(const DataLoss& loss, const float* u, const float* t, int64_t n, double scale, float* du) {
  const double inv_n = 1.0 / static_cast<double>(n);
  double sum = 0;
  switch (loss.kind) {
    case DataLossKind::mse:
      for (int64_t i = 0; i < n; ++i) {
        const double e = static_cast<double>(u[i]) - t[i];
        sum += e * e;
        if (du) du[i] = static_cast<float>(scale * 2 * e * inv_n);
      }
      return sum * inv_n;
    case DataLossKind::l1:
      for (int64_t i = 0; i < n; ++i) {
        const double e = static_cast<double>(u[i]) - t[i];
        sum += std::abs(e);
        if (du) du[i] = static_cast<float>(scale * ((e > 0) - (e < 0)) * inv_n);
      }
      return sum * inv_n;
    case DataLossKind::huber: {
      const double d = loss.huber_delta;
      for (int64_t i = 0; i < n; ++i) {
        const double e = static_cast<double>(u[i]) - t[i];
        const double a = std::abs(e);
        sum += a <= d ? 0.5 * e * e : d * (a - 0.5 * d);
        if (du) du[i] = static_cast<float>(scale * (a <= d ? e : d * ((e > 0) - (e < 0))) * inv_n);
      }
      return sum * inv_n;
    }
    case DataLossKind::rel_l2: {
      double ee = 0, tt = 0;
      for (int64_t i = 0; i < n; ++i) {
        const double e = static_cast<double>(u[i]) - t[i];
        ee += e * e;
        tt += static_cast<double>(t[i]) * t[i];
      }
      const double norm_t = std::sqrt(tt), norm_e = std::sqrt(ee);
      const double value = norm_e / norm_t;
      // d||e||/de = e / ||e||; at e = 0 the subgradient 0.
      const double g = norm_e > 0 ? scale / (norm_e * norm_t) : 0.0;
      if (du)
        for (int64_t i = 0; i < n; ++i) du[i] = static_cast<float>(g * (static_cast<double>(u[i]) - t[i]));
      return value;
    }
  }
  return 0;
}

}  // namespace

double data_loss(const DataLoss& loss, const float* u, const float* target, int64_t samples, int64_t values,
                 double grad_scale, float* du, std::vector<double>* per_sample) {
  double sum = 0;
  if (per_sample) per_sample->assign(static_cast<size_t>(samples), 0.0);
  for (int64_t s = 0; s < samples; ++s) {
    const int64_t at = s * values;
    const double l = sample_loss(loss, u + at, target + at, values, grad_scale, du ? du + at : nullptr);
    if (per_sample) (*per_sample)[static_cast<size_t>(s)] = l;
    sum += l;
  }
  return sum;
}

}  // namespace pdegen::data

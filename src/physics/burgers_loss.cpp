// The burgers1d losses on the CPU (see burgers_loss.hpp; the element arithmetic is
// burgers_kernels.hpp).
#include "physics/burgers_loss.hpp"

#include "backend/cpu/parallel.hpp"
#include "core/dispatch.hpp"
#include "core/error.hpp"
#include "physics/burgers_kernels.hpp"

namespace pdegen {

namespace {

burgers::Grid grid_of(int nx, int nt, const BurgersSettings& s) {
  return {nx, nt, 1.0 / (nx - 1), s.t_final / (nt - 1), s.viscosity};
}

// Sum of per-row partial sums in row order: the same value on any number of threads.
template <class RowSum>
double ordered_sum(int rows, RowSum&& row_sum) {
  std::vector<double> partial(static_cast<size_t>(rows));
  cpu::parallel_for(rows, [&](int64_t n) { partial[static_cast<size_t>(n)] = row_sum(static_cast<int>(n)); });
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

}  // namespace

BurgersLoss::BurgersLoss(LossKind kind, const BurgersSettings& settings) : kind_(kind), settings_(settings) {
  PDEGEN_CHECK(kind == LossKind::residual || (kind == LossKind::least_squares && settings.viscosity == 0),
               "burgers1d loss {} with viscosity {}", name_of(kind), settings.viscosity);
}

double BurgersLoss::galerkin(const float* u, int nx, int nt, double grad_scale, float* du) const {
  const burgers::Grid g = grid_of(nx, nt, settings_);
  const double inv_area = 1.0 / (g.hx * g.ht);
  std::vector<double> lambda(static_cast<size_t>(nx) * nt, 0.0);  // dJ/dR: zero off the test nodes
  const double J = ordered_sum(nt, [&](int n) {
    double row = 0;
    if (n == 0) return row;
    for (int j = 1; j < nx; ++j) {
      const double R = burgers::galerkin_residual(u, g, n, j);
      row += inv_area * R * R;
      lambda[static_cast<size_t>(n) * nx + j] = 2.0 * inv_area * R;
    }
    return row;
  });
  if (du != nullptr)
    cpu::parallel_for(nt, [&](int64_t n) {
      for (int j = 0; j < nx; ++j)
        du[n * nx + j] += static_cast<float>(
            grad_scale * burgers::galerkin_gradient(u, lambda.data(), g, static_cast<int>(n), j));
    });
  return J;
}

double BurgersLoss::least_squares(const float* u, int nx, int nt, double grad_scale, float* du) const {
  const burgers::Grid g = grid_of(nx, nt, settings_);
  const double J = ordered_sum(nt - 1, [&](int en) {
    double row = 0;
    for (int ej = 0; ej < nx - 1; ++ej) row += burgers::least_squares_element(u, g, en, ej);
    return row;
  });
  if (du != nullptr)
    cpu::parallel_for(nt, [&](int64_t n) {
      for (int j = 0; j < nx; ++j)
        du[n * nx + j] +=
            static_cast<float>(grad_scale * burgers::least_squares_gradient(u, g, static_cast<int>(n), j));
    });
  return J;
}

double BurgersLoss::penalty(const float* u, const float* b, int nx, int nt, double grad_scale,
                            float* du) const {
  const burgers::Grid g = grid_of(nx, nt, settings_);
  const double beta = settings_.boundary_factor;
  double J = 0;
  for (int j = 0; j < nx; ++j) {  // u(x, 0) = b(x)
    const double e = static_cast<double>(u[j]) - b[j];
    J += beta * g.hx * e * e;
    if (du != nullptr) du[j] += static_cast<float>(grad_scale * 2.0 * beta * g.hx * e);
  }
  for (int n = 1; n < nt; ++n) {  // u(0, t) = 0
    const double e = u[static_cast<int64_t>(n) * nx];
    J += beta * g.ht * e * e;
    if (du != nullptr)
      du[static_cast<int64_t>(n) * nx] += static_cast<float>(grad_scale * 2.0 * beta * g.ht * e);
  }
  return J;
}

double BurgersLoss::evaluate(const Tensor& u, const Tensor& input, double grad_scale, Tensor* du,
                             std::vector<double>* per_sample) const {
  PDEGEN_CHECK(u.rank() == 4 && u.dim(1) == 1 && u.is_plain() && u.dtype() == DType::f32 &&
                   input.device() == u.device() && input.rank() == 4 && input.dim(0) == u.dim(0) &&
                   input.dim(2) == u.dim(2) && input.dim(3) == u.dim(3) && input.is_plain(),
               "burgers1d loss of {} with input {}", u.describe(), input.describe());
  if (u.device() == Device::cuda)
    return PDEGEN_DISPATCH(u.device(), 0.0, evaluate_cuda(u, input, grad_scale, du, per_sample));
  const int nt = static_cast<int>(u.dim(2)), nx = static_cast<int>(u.dim(3));
  const int64_t b = u.dim(0), per = static_cast<int64_t>(nt) * nx;
  if (du != nullptr) {
    if (!(du->defined() && du->shape() == u.shape() && du->is_plain() && du->dtype() == DType::f32 &&
          du->device() == Device::cpu))
      *du = Tensor::empty(u.shape());
    du->fill(0.0f);
  }
  if (per_sample != nullptr) per_sample->assign(static_cast<size_t>(b), 0.0);
  double total = 0;
  for (int64_t s = 0; s < b; ++s) {
    const float* us = u.data<float>() + s * per;
    float* ds = du != nullptr ? du->data<float>() + s * per : nullptr;
    double J = kind_ == LossKind::least_squares ? least_squares(us, nx, nt, grad_scale, ds)
                                                : galerkin(us, nx, nt, grad_scale, ds);
    if (settings_.boundary == BoundaryTreatment::penalty)
      J += penalty(us, input.data<float>() + s * input.dim(1) * per, nx, nt, grad_scale, ds);  // channel 0: b
    if (per_sample != nullptr) (*per_sample)[static_cast<size_t>(s)] = J;
    total += J;
  }
  return total;
}

}  // namespace pdegen

// The burgers1d loss and lift beyond the conformance suite (test_problem_conformance.cpp, which checks
// their gradients): bitwise the same on any number of OpenMP threads; the GPU's loss, gradient and
// lift equal the CPU's (to fp64 rounding of the loss, fp32 of the gradient; skipped without a GPU);
// grad_scale and per-sample values behave; the least-squares loss of the interpolant of an exact
// solution of the inviscid equation (u = x / (1 + t)) is small and converges at its order.
#include <omp.h>

#include <cmath>

#include "backends.hpp"
#include "device_testing.hpp"
#include "physics/burgers_lift.hpp"
#include "physics/burgers_loss.hpp"
#include "physics/burgers_sampler.hpp"
#include "testing.hpp"

using namespace pdegen;
using namespace pdegen::testing;

namespace {

struct Case {
  BurgersSettings settings;
  LossKind kind;
};

std::vector<Case> cases() {
  std::vector<Case> all;
  for (double nu : {0.0, 0.02})
    for (BoundaryTreatment boundary : {BoundaryTreatment::exact, BoundaryTreatment::penalty}) {
      BurgersSettings s;
      s.viscosity = nu;
      s.boundary = boundary;
      all.push_back({s, LossKind::residual});
      if (nu == 0) all.push_back({s, LossKind::least_squares});
    }
  return all;
}

struct Fields {
  Tensor u, input;
};

Fields random_fields(int nt, int nx, uint64_t seed) {
  BurgersSettings s;
  s.ic_terms = 2;
  const BurgersSampler sampler(s, nx, nt);
  Fields f;
  sampler.sample(seed, {1, 2, 3}, f.input);
  const Shape shape{3, 1, nt, nx};
  f.u = tensor_from(random_vec(static_cast<size_t>(shape.numel()), seed + 10, 0, 1), shape);
  return f;
}

}  // namespace

TEST_CASE("burgers1d losses and gradients are bitwise the same on any number of OpenMP threads") {
  const Fields f = random_fields(9, 13, 4);
  const int saved = omp_get_max_threads();
  for (const Case& c : cases()) {
    CAPTURE(name_of(c.kind));
    CAPTURE(c.settings.viscosity);
    const BurgersLoss loss(c.kind, c.settings);
    omp_set_num_threads(1);
    Tensor du_ref;
    const double ref = loss.evaluate(f.u, f.input, 1.0, &du_ref, nullptr);
    for (int threads : {2, 3}) {
      omp_set_num_threads(threads);
      Tensor du;
      CHECK(loss.evaluate(f.u, f.input, 1.0, &du, nullptr) == ref);
      CHECK(values_of(du) == values_of(du_ref));
    }
  }
  omp_set_num_threads(saved);
}

TEST_CASE("burgers1d grad_scale scales the gradient only, and the per-sample values sum to the loss") {
  const Fields f = random_fields(7, 9, 5);
  for (const Case& c : cases()) {
    const BurgersLoss loss(c.kind, c.settings);
    Tensor du1, du4;
    std::vector<double> per;
    const double l1 = loss.evaluate(f.u, f.input, 1.0, &du1, &per);
    CHECK(loss.evaluate(f.u, f.input, 0.25, &du4, nullptr) == l1);
    const Vec g1 = values_of(du1), g4 = values_of(du4);
    for (size_t i = 0; i < g1.size(); ++i) CHECK(g4[i] == doctest::Approx(0.25 * g1[i]).epsilon(1e-6));
    REQUIRE(per.size() == 3);
    CHECK(per[0] + per[1] + per[2] == doctest::Approx(l1).epsilon(1e-14));
  }
}

TEST_CASE("the least-squares loss vanishes on an exact inviscid solution u = x / (1 + t)") {
  // u_t = -x / (1 + t)^2 = -u u_x: an exact solution, not bilinear in t, so its Q1 interpolant leaves
  // a residual: the interpolant's derivatives at the Gauss points are first-order accurate, r = O(h)
  // and J = integral of r^2 = O(h^2), 4x smaller on a grid refined 2x (measured: 4.0x).
  auto loss_on = [](int n) {
    BurgersSettings s;
    s.t_final = 0.5;
    const BurgersLoss loss(LossKind::least_squares, s);
    Tensor u = Tensor::empty(Shape{1, 1, n, n}), input = Tensor::zeros(Shape{1, 3, n, n});
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j)
        u.data<float>()[i * n + j] = static_cast<float>((j / (n - 1.0)) / (1 + 0.5 * i / (n - 1.0)));
    return loss.evaluate(u, input, 1.0, nullptr, nullptr);
  };
  const double coarse = loss_on(9), fine = loss_on(17);
  CHECK(coarse < 1e-4);
  CHECK(fine < coarse / 3.5);
  CHECK(fine > coarse / 4.5);
}

TEST_CASE("burgers1d loss, gradient and lift on the GPU equal the CPU's") {
  const Fields f = random_fields(16, 24, 6);
  for_each_device([&](Device device) {
    if (device == Device::cpu) return;
    const Tensor u = f.u.to(device), input = f.input.to(device);
    for (const Case& c : cases()) {
      CAPTURE(name_of(c.kind));
      CAPTURE(c.settings.viscosity);
      const BurgersLoss loss(c.kind, c.settings);
      Tensor du_cpu, du_gpu;
      std::vector<double> per_cpu, per_gpu;
      const double cpu = loss.evaluate(f.u, f.input, 1.0, &du_cpu, &per_cpu);
      const double gpu = loss.evaluate(u, input, 1.0, &du_gpu, &per_gpu);
      CHECK(gpu == doctest::Approx(cpu).epsilon(1e-12));
      CHECK(rel_max_error(host_values(du_gpu), values_of(du_cpu)) < 1e-6);
    }
    const BurgersLift lift;
    CHECK(host_values(lift.forward(u, input)) == values_of(lift.forward(f.u, f.input)));
    CHECK(host_values(lift.backward(u)) == values_of(lift.backward(f.u)));
  });
}

// Poisson FEM losses: hand-computed single elements, the energy and residual against K and F
// assembled densely here from an independent element formula, their gradients against central
// differences, the discrete solution as the energy's stationary point, thread-count invariance on
// the CPU and run-to-run invariance on every backend. The loss's tests run on every backend.
#include <omp.h>

#include <cmath>
#include <tuple>

#include "device_testing.hpp"
#include "physics/poisson_loss.hpp"
#include "physics/q1_kernels.hpp"

using namespace pdegen;
using namespace pdegen::testing;

namespace {

// K (row-major, nodes numbered j * nx + i) and F of the Q1 discretisation, assembled element by
// element in unit-square local coordinates (s, t) with a 3x3 Gauss rule. The integrands nu_h grad N_a
// . grad N_b (nu_h bilinear) are at most cubic in each variable, so both this rule and the loss's 2x2
// rule integrate them exactly: the two must agree to rounding, with no code in common.
struct Dense {
  int nx, ny;
  Vec K, F;
  size_t size() const { return static_cast<size_t>(nx * ny); }
  double& k(int r, int c) { return K[static_cast<size_t>(r) * size() + static_cast<size_t>(c)]; }
  double k(int r, int c) const { return K[static_cast<size_t>(r) * size() + static_cast<size_t>(c)]; }
};

Dense assemble_dense(const Vec& nu, int nx, int ny, double f) {
  Dense d{nx, ny, Vec(static_cast<size_t>(nx * ny * nx * ny)), Vec(static_cast<size_t>(nx * ny))};
  const double hx = 1.0 / (nx - 1), hy = 1.0 / (ny - 1);
  const double gp[3] = {0.5 - 0.5 * std::sqrt(0.6), 0.5, 0.5 + 0.5 * std::sqrt(0.6)};
  const double gw[3] = {5.0 / 18, 8.0 / 18, 5.0 / 18};
  for (int j = 0; j + 1 < ny; ++j)
    for (int i = 0; i + 1 < nx; ++i) {
      const int idx[4] = {j * nx + i, j * nx + i + 1, (j + 1) * nx + i, (j + 1) * nx + i + 1};
      for (int p = 0; p < 3; ++p)
        for (int q = 0; q < 3; ++q) {
          const double s = gp[p], t = gp[q], w = gw[p] * gw[q] * hx * hy;
          const double N[4] = {(1 - s) * (1 - t), s * (1 - t), (1 - s) * t, s * t};
          const double dx[4] = {-(1 - t) / hx, (1 - t) / hx, -t / hx, t / hx};
          const double dy[4] = {-(1 - s) / hy, -s / hy, (1 - s) / hy, s / hy};
          double nu_q = 0;
          for (int a = 0; a < 4; ++a) nu_q += N[a] * nu[static_cast<size_t>(idx[a])];
          for (int a = 0; a < 4; ++a) {
            d.F[static_cast<size_t>(idx[a])] += w * f * N[a];
            for (int b = 0; b < 4; ++b) d.k(idx[a], idx[b]) += w * nu_q * (dx[a] * dx[b] + dy[a] * dy[b]);
          }
        }
    }
  return d;
}

Vec matvec(const Dense& d, const Vec& u) {
  Vec y(d.size());
  for (size_t r = 0; r < d.size(); ++r)
    for (size_t c = 0; c < d.size(); ++c) y[r] += d.K[r * d.size() + c] * u[c];
  return y;
}

double energy_reference(const Dense& d, const Vec& u) {
  const Vec ku = matvec(d, u);
  return 0.5 * dot(u, ku) - dot(d.F, u);
}

bool is_free(const Dense& d, size_t node) {
  const int i = static_cast<int>(node) % d.nx;
  return i != 0 && i != d.nx - 1;
}

Vec residual_reference(const Dense& d, const Vec& u) {
  Vec r = matvec(d, u);
  for (size_t k = 0; k < r.size(); ++k) r[k] -= d.F[k];
  return r;
}

double residual_loss_reference(const Dense& d, const Vec& u) {
  const Vec r = residual_reference(d, u);
  double s = 0;
  for (size_t k = 0; k < r.size(); ++k)
    if (is_free(d, k)) s += r[k] * r[k];
  return s;
}

// Gaussian elimination with partial pivoting on a dense row-major system.
Vec dense_solve(Vec A, Vec b) {
  const size_t n = b.size();
  for (size_t c = 0; c < n; ++c) {
    size_t p = c;
    for (size_t r = c + 1; r < n; ++r)
      if (std::abs(A[r * n + c]) > std::abs(A[p * n + c])) p = r;
    for (size_t k = 0; k < n; ++k) std::swap(A[c * n + k], A[p * n + k]);
    std::swap(b[c], b[p]);
    for (size_t r = c + 1; r < n; ++r) {
      const double m = A[r * n + c] / A[c * n + c];
      for (size_t k = c; k < n; ++k) A[r * n + k] -= m * A[c * n + k];
      b[r] -= m * b[c];
    }
  }
  Vec x(n);
  for (size_t r = n; r-- > 0;) {
    double s = b[r];
    for (size_t k = r + 1; k < n; ++k) s -= A[r * n + k] * x[k];
    x[r] = s / A[r * n + r];
  }
  return x;
}

Vec exp_of(const Vec& v) {
  Vec e(v.size());
  for (size_t k = 0; k < v.size(); ++k) e[k] = std::exp(v[k]);
  return e;
}

Vec part(const Vec& v, size_t sample, size_t per) {
  return Vec(v.begin() + static_cast<std::ptrdiff_t>(sample * per),
             v.begin() + static_cast<std::ptrdiff_t>((sample + 1) * per));
}

// Random u and log nu of shape [b, 1, ny, nx], and the fp32-rounded values the loss actually sees.
struct Case {
  Shape shape;
  Tensor u, log_nu;
  Vec u_vals, log_nu_vals;
};

Case random_case(int b, int ny, int nx, uint64_t stream) {
  Case c{Shape{b, 1, ny, nx}, {}, {}, {}, {}};
  const size_t count = static_cast<size_t>(c.shape.numel());
  c.u = tensor_from(random_vec(count, stream, -1, 1), c.shape);
  c.log_nu = tensor_from(random_vec(count, stream + 1, -1.5, 1.5), c.shape);
  c.u_vals = values_of(c.u);
  c.log_nu_vals = values_of(c.log_nu);
  return c;
}

// The 3D analogue of Dense: K and F of Q1 hexahedra (nodes (k * ny + j) * nx + i), assembled in
// unit-cube local coordinates from the 1D shape functions 1 - s and s with a 3x3x3 Gauss rule, exact
// for these integrands, sharing no code with the loss.
struct Dense3 {
  int nx, ny, nz;
  Dense d;  // the matrix storage and the free-node rule (x lines) are those of 2D with nx * ny rows
};

Dense3 assemble_dense_3d(const Vec& nu, int nx, int ny, int nz, double f) {
  const int N = nx * ny * nz;
  Dense3 out{
      nx, ny, nz,
      Dense{nx, ny * nz, Vec(static_cast<size_t>(N) * static_cast<size_t>(N)), Vec(static_cast<size_t>(N))}};
  Dense& d = out.d;
  const double h[3] = {1.0 / (nx - 1), 1.0 / (ny - 1), 1.0 / (nz - 1)};
  const double gp[3] = {0.5 - 0.5 * std::sqrt(0.6), 0.5, 0.5 + 0.5 * std::sqrt(0.6)};
  const double gw[3] = {5.0 / 18, 8.0 / 18, 5.0 / 18};
  auto shape1 = [](int bit, double s) { return bit ? s : 1 - s; };
  auto slope1 = [](int bit) { return bit ? 1.0 : -1.0; };
  for (int k = 0; k + 1 < nz; ++k)
    for (int j = 0; j + 1 < ny; ++j)
      for (int i = 0; i + 1 < nx; ++i) {
        int idx[8];
        for (int a = 0; a < 8; ++a) idx[a] = ((k + (a >> 2)) * ny + j + ((a >> 1) & 1)) * nx + i + (a & 1);
        for (int p = 0; p < 3; ++p)
          for (int q = 0; q < 3; ++q)
            for (int r = 0; r < 3; ++r) {
              const double x[3] = {gp[p], gp[q], gp[r]};
              const double w = gw[p] * gw[q] * gw[r] * h[0] * h[1] * h[2];
              double N_[8], grad[8][3];
              for (int a = 0; a < 8; ++a) {
                const int b[3] = {a & 1, (a >> 1) & 1, a >> 2};
                N_[a] = shape1(b[0], x[0]) * shape1(b[1], x[1]) * shape1(b[2], x[2]);
                for (int dd = 0; dd < 3; ++dd) {
                  double g = slope1(b[dd]) / h[dd];
                  for (int e = 0; e < 3; ++e)
                    if (e != dd) g *= shape1(b[e], x[e]);
                  grad[a][dd] = g;
                }
              }
              double nu_q = 0;
              for (int a = 0; a < 8; ++a) nu_q += N_[a] * nu[static_cast<size_t>(idx[a])];
              for (int a = 0; a < 8; ++a) {
                d.F[static_cast<size_t>(idx[a])] += w * f * N_[a];
                for (int b = 0; b < 8; ++b)
                  d.k(idx[a], idx[b]) +=
                      w * nu_q *
                      (grad[a][0] * grad[b][0] + grad[a][1] * grad[b][1] + grad[a][2] * grad[b][2]);
              }
            }
      }
  return out;
}

// Random u and log nu of shape [b, 1, nz, ny, nx].
Case random_case_3d(int b, int nz, int ny, int nx, uint64_t stream) {
  Case c{Shape{b, 1, nz, ny, nx}, {}, {}, {}, {}};
  const size_t count = static_cast<size_t>(c.shape.numel());
  c.u = tensor_from(random_vec(count, stream, -1, 1), c.shape);
  c.log_nu = tensor_from(random_vec(count, stream + 1, -1.5, 1.5), c.shape);
  c.u_vals = values_of(c.u);
  c.log_nu_vals = values_of(c.log_nu);
  return c;
}

}  // namespace

TEST_CASE("single element energy and gradient match a hand computation") {
  // One element (2 x 2 nodes, h = 1), u = x, nu = 1 + x + 2y (nodal 1, 2, 3, 4), f = 1:
  //   J = 1/2 int nu - int x = 1/2 * 5/2 - 1/2 = 3/4
  //   (K u)_a = int nu dN_a/dx = -13/12, 13/12, -17/12, 17/12 (int (1 + x + 2y)(1 - y) = 13/12,
  //   int (1 + x + 2y) y = 17/12), F_a = 1/4, so dJ/du = -4/3, 5/6, -5/3, 7/6.
  for_each_device([](Device device) {
    const Shape shape{1, 1, 2, 2};
    const Tensor u = tensor_on(device, {0, 1, 0, 1}, shape);
    const Tensor log_nu = tensor_on(device, {0, std::log(2.0), std::log(3.0), std::log(4.0)}, shape);
    const PoissonLoss loss(LossKind::energy, 1.0);
    Tensor du;
    const double j = loss.evaluate(u, log_nu, 1.0, &du, nullptr);
    CHECK(du.device() == device);
    // fp32 log nu carries ~1e-7 relative error into nu.
    CHECK(j == doctest::Approx(0.75).epsilon(1e-6));
    const Vec expected = {-4.0 / 3, 5.0 / 6, -5.0 / 3, 7.0 / 6};
    CHECK(rel_max_error(host_values(du), expected) < 1e-6);
  });
}

TEST_CASE("energy, gradient and load vector of u = x on a 3 x 3 grid match a hand computation") {
  // h = 1/2, nu = 1. u = x is linear, so K u vanishes inside and is the boundary flux int N_a dn u:
  // -h/2, -h, -h/2 on the x = 0 column, +h/2, +h, +h/2 on x = 1. With f = 2: J = 1/2 - 2 int x = -1/2,
  // F = f h^2 (1/4 at corners, 1/2 on edges, 1 inside) = 0.125, 0.25, 0.5.
  for_each_device([](Device device) {
    const Shape shape{1, 1, 3, 3};
    const Tensor u = tensor_on(device, {0, 0.5, 1, 0, 0.5, 1, 0, 0.5, 1}, shape);
    const Tensor log_nu = Tensor::zeros(shape, DType::f32, device);
    Tensor du;
    CHECK(PoissonLoss(LossKind::energy, 0.0).evaluate(u, log_nu, 1.0, &du, nullptr) ==
          doctest::Approx(0.5).epsilon(1e-14));
    CHECK(rel_max_error(host_values(du), {-0.25, 0, 0.25, -0.5, 0, 0.5, -0.25, 0, 0.25}) < 1e-7);
    CHECK(PoissonLoss(LossKind::energy, 2.0).evaluate(u, log_nu, 1.0, nullptr, nullptr) ==
          doctest::Approx(-0.5).epsilon(1e-14));
  });
  Vec F(9);
  load_vector(2.0, 3, F.data());
  CHECK(rel_max_error(F, {0.125, 0.25, 0.125, 0.25, 0.5, 0.25, 0.125, 0.25, 0.125}) < 1e-15);
}

TEST_CASE("grid energy equals u^T K u / 2 - F^T u with K and F assembled densely") {
  for_each_device([](Device device) {
    for (auto [ny, nx] : {std::pair{2, 2}, {5, 6}, {4, 11}, {19, 17}}) {
      CAPTURE(ny);
      CAPTURE(nx);
      const Case c = random_case(2, ny, nx, 10);
      const double f = 0.7;
      std::vector<double> per_sample;
      const double total = PoissonLoss(LossKind::energy, f)
                               .evaluate(c.u.to(device), c.log_nu.to(device), 1.0, nullptr, &per_sample);
      REQUIRE(per_sample.size() == 2);
      const size_t per = static_cast<size_t>(nx * ny);
      double expected_total = 0;
      for (size_t s = 0; s < 2; ++s) {
        const Dense d = assemble_dense(exp_of(part(c.log_nu_vals, s, per)), nx, ny, f);
        const double expected = energy_reference(d, part(c.u_vals, s, per));
        CHECK(per_sample[s] == doctest::Approx(expected).epsilon(1e-12));
        expected_total += expected;
      }
      CHECK(total == doctest::Approx(expected_total).epsilon(1e-12));
    }
  });
}

TEST_CASE("energy gradient is K u - F at every node and matches central differences") {
  for_each_device([](Device device) {
    const int ny = 5, nx = 11;  // 10 elements per row: eight lanes and a scalar tail
    const Case c = random_case(2, ny, nx, 20);
    const double f = -1.3;
    Tensor du;
    PoissonLoss(LossKind::energy, f).evaluate(c.u.to(device), c.log_nu.to(device), 1.0, &du, nullptr);
    REQUIRE(du.shape() == c.shape);
    const Vec got = host_values(du);
    const size_t per = static_cast<size_t>(nx * ny);
    for (size_t s = 0; s < 2; ++s) {
      const Dense d = assemble_dense(exp_of(part(c.log_nu_vals, s, per)), nx, ny, f);
      const Vec u = part(c.u_vals, s, per);
      CHECK(rel_max_error(part(got, s, per), residual_reference(d, u)) < f32_tol);
      const Vec fd = fd_gradient([&](const Vec& v) { return Vec{energy_reference(d, v)}; }, u, Vec{1.0});
      CHECK(rel_max_error(part(got, s, per), fd) < f32_tol);
    }
  });
}

TEST_CASE("the energy gradient vanishes on the free nodes at the exact discrete solution") {
  const int n = 9;
  const size_t N = static_cast<size_t>(n * n);
  const double f = 1.0;
  const Vec log_nu = random_vec(N, 30, -1.5, 1.5);
  const Tensor log_nu_t = tensor_from(log_nu, Shape{1, 1, n, n});
  const Vec nu = exp_of(values_of(log_nu_t));
  const Dense d = assemble_dense(nu, n, n, f);
  // K u = F on the free nodes, u = 1 on x = 0 and u = 0 on x = 1 (rows replaced by the identity).
  Vec A = d.K, rhs = d.F;
  for (size_t r = 0; r < N; ++r)
    if (!is_free(d, r)) {
      for (size_t c = 0; c < N; ++c) A[r * N + c] = r == c ? 1.0 : 0.0;
      rhs[r] = static_cast<int>(r) % n == 0 ? 1.0 : 0.0;
    }
  const Vec u = dense_solve(A, rhs);
  // The scale against which "zero" is measured: sum_j |K_ij u_j| + |F_i|.
  double scale = 0;
  for (size_t r = 0; r < N; ++r) {
    double s = std::abs(d.F[r]);
    for (size_t c = 0; c < N; ++c) s += std::abs(d.k(static_cast<int>(r), static_cast<int>(c)) * u[c]);
    scale = std::max(scale, s);
  }
  // In fp64 through the shared operator: to solver precision.
  Vec ku(N), F(N);
  apply_stiffness(nu.data(), u.data(), ku.data(), n);
  load_vector(f, n, F.data());
  double worst = 0, reaction = 0;
  for (size_t k = 0; k < N; ++k)
    (is_free(d, k) ? worst : reaction) = std::max(is_free(d, k) ? worst : reaction, std::abs(ku[k] - F[k]));
  CHECK(worst < 1e-12 * scale);
  CHECK(reaction > 1e-3 * scale);  // the Dirichlet nodes carry the boundary flux: not trivially zero
  // Through the loss, from fp32 u: to fp32 rounding of u.
  for_each_device([&](Device device) {
    Tensor du;
    PoissonLoss(LossKind::energy, f)
        .evaluate(tensor_on(device, u, Shape{1, 1, n, n}), log_nu_t.to(device), 1.0, &du, nullptr);
    const Vec g = host_values(du);
    double worst32 = 0;
    for (size_t k = 0; k < N; ++k)
      if (is_free(d, k)) worst32 = std::max(worst32, std::abs(g[k]));
    CHECK(worst32 < 1e-6 * scale);
  });
}

TEST_CASE("apply_stiffness and load_vector equal the densely assembled K u and F") {
  for (auto [ny, nx] : {std::pair{7, 7}, {4, 9}, {2, 3}}) {
    CAPTURE(ny);
    CAPTURE(nx);
    const size_t N = static_cast<size_t>(nx * ny);
    const Vec nu = exp_of(random_vec(N, 40, -2, 2));
    const Vec u = random_vec(N, 41);
    const Dense d = assemble_dense(nu, nx, ny, 0.3);
    Vec ku(N), F(N);
    apply_stiffness(nu.data(), u.data(), ku.data(), nx, ny);
    load_vector(0.3, nx, ny, F.data());
    CHECK(rel_max_error(ku, matvec(d, u)) < 1e-13);
    CHECK(rel_max_error(F, d.F) < 1e-14);
  }
  // nodal_coefficient is exp of the fp32 value, in fp64.
  const float ln[2] = {0.5f, -1.25f};
  double nu[2];
  nodal_coefficient(ln, 2, nu);
  CHECK(nu[0] == std::exp(double{0.5f}));
  CHECK(nu[1] == std::exp(-1.25));
}

TEST_CASE("residual loss is ||K u - F||^2 over the free nodes and its gradient matches central differences") {
  for_each_device([](Device device) {
    const int ny = 5, nx = 11;  // 10 elements per row: eight lanes and a scalar tail
    const Case c = random_case(2, ny, nx, 50);
    const double f = 0.9;
    Tensor du;
    std::vector<double> per_sample;
    const double total = PoissonLoss(LossKind::residual, f)
                             .evaluate(c.u.to(device), c.log_nu.to(device), 1.0, &du, &per_sample);
    const Vec got = host_values(du);
    const size_t per = static_cast<size_t>(nx * ny);
    double expected_total = 0;
    for (size_t s = 0; s < 2; ++s) {
      const Dense d = assemble_dense(exp_of(part(c.log_nu_vals, s, per)), nx, ny, f);
      const Vec u = part(c.u_vals, s, per);
      const double expected = residual_loss_reference(d, u);
      CHECK(per_sample[s] == doctest::Approx(expected).epsilon(1e-12));
      expected_total += expected;
      const Vec fd =
          fd_gradient([&](const Vec& v) { return Vec{residual_loss_reference(d, v)}; }, u, Vec{1.0});
      CHECK(rel_max_error(part(got, s, per), fd) < f32_tol);
    }
    CHECK(total == doctest::Approx(expected_total).epsilon(1e-12));
  });
}

TEST_CASE("grad_scale scales du and leaves the loss unchanged, for both losses") {
  const Case c = random_case(3, 8, 7, 60);
  for_each_device([&](Device device) {
    const Tensor u = c.u.to(device), log_nu = c.log_nu.to(device);
    for (LossKind kind : {LossKind::energy, LossKind::residual}) {
      const PoissonLoss loss(kind, 0.5);
      Tensor du1, du4;
      const double l1 = loss.evaluate(u, log_nu, 1.0, &du1, nullptr);
      const double l4 = loss.evaluate(u, log_nu, 0.25, &du4, nullptr);
      CHECK(l1 == l4);
      const Vec g1 = host_values(du1), g4 = host_values(du4);
      for (size_t k = 0; k < g1.size(); ++k) CHECK(g4[k] == 0.25f * static_cast<float>(g1[k]));
      // Without du the loss is the same number.
      CHECK(loss.evaluate(u, log_nu, 1.0, nullptr, nullptr) == l1);
    }
  });
}

TEST_CASE("loss and gradient are bitwise the same on any number of OpenMP threads") {
  const Case c = random_case(2, 31, 33, 70);
  const int saved = omp_get_max_threads();
  for (LossKind kind : {LossKind::energy, LossKind::residual}) {
    const PoissonLoss loss(kind, 0.4);
    omp_set_num_threads(1);
    Tensor du_ref;
    const double ref = loss.evaluate(c.u, c.log_nu, 1.0, &du_ref, nullptr);
    for (int threads : {2, 3, 5}) {
      CAPTURE(threads);
      omp_set_num_threads(threads);
      Tensor du;
      CHECK(loss.evaluate(c.u, c.log_nu, 1.0, &du, nullptr) == ref);
      CHECK(values_of(du) == values_of(du_ref));
    }
  }
  omp_set_num_threads(saved);
}

TEST_CASE("loss and gradient are bitwise the same run to run on every backend") {
  const Case c = random_case(3, 33, 65, 80);
  for_each_device([&](Device device) {
    const Tensor u = c.u.to(device), log_nu = c.log_nu.to(device);
    for (LossKind kind : {LossKind::energy, LossKind::residual}) {
      const PoissonLoss loss(kind, 0.4);
      Tensor du_ref, du;
      std::vector<double> per_ref, per;
      const double ref = loss.evaluate(u, log_nu, 1.0, &du_ref, &per_ref);
      for (int run = 0; run < 3; ++run) {
        CHECK(loss.evaluate(u, log_nu, 1.0, &du, &per) == ref);
        CHECK(per == per_ref);
        CHECK(host_values(du) == host_values(du_ref));
      }
    }
  });
}

TEST_CASE("loss rejects mismatched or non-plain inputs") {
  for_each_device([](Device device) {
    const auto zeros = [device](const Shape& s) { return Tensor::zeros(s, DType::f32, device); };
    const PoissonLoss loss(LossKind::energy, 0.0);
    CHECK_THROWS_AS(loss.evaluate(zeros(Shape{1, 1, 4, 4}), zeros(Shape{1, 1, 4, 5}), 1.0, nullptr, nullptr),
                    Error);
    CHECK_THROWS_AS(loss.evaluate(zeros(Shape{1, 2, 4, 4}), zeros(Shape{1, 2, 4, 4}), 1.0, nullptr, nullptr),
                    Error);
    CHECK_THROWS_AS(loss.evaluate(zeros(Shape{1, 1, 1, 4}), zeros(Shape{1, 1, 1, 4}), 1.0, nullptr, nullptr),
                    Error);
    // u and log nu on different devices.
    if (device == Device::cuda)
      CHECK_THROWS_AS(
          loss.evaluate(zeros(Shape{1, 1, 4, 4}), Tensor::zeros(Shape{1, 1, 4, 4}), 1.0, nullptr, nullptr),
          Error);
  });
}

// ---- 3D (poisson3d): Q1 hexahedra, fields [b, 1, Nz, Ny, Nx] --------------------------------

TEST_CASE("one hexahedron: energy and gradient of u = x match a hand computation") {
  // Unit cube, u = x, nu = 1 + 2z (nodal 1 on z = 0, 3 on z = 1: trilinear, so exact), f = 1:
  //   J = 1/2 int (1 + 2z) - int x = 1 - 1/2 = 1/2
  //   (K u)_a = int nu dN_a/dx = +-(int phi_y)(int (1 + 2z) phi_z) = +-1/2 * (5/6 | 7/6) (z-bit 0 | 1),
  //   F_a = 1/8, so dJ/du_a = -13/24, 7/24 (z = 0, x-bit 0 | 1) and -17/24, 11/24 (z = 1).
  const Vec expected = {-13.0 / 24, 7.0 / 24,  -13.0 / 24, 7.0 / 24,
                        -17.0 / 24, 11.0 / 24, -17.0 / 24, 11.0 / 24};
  // The shared kernels in fp64.
  {
    const double u[8] = {0, 1, 0, 1, 0, 1, 0, 1}, nu[8] = {1, 1, 1, 1, 3, 3, 3, 3};
    const double f[8] = {1, 1, 1, 1, 1, 1, 1, 1}, h[3] = {1, 1, 1};
    double nu_q[8], g[8];
    q1::gauss_values<3>(nu, nu_q);
    CHECK(q1::element_energy<3>(u, nu_q, f, h) == doctest::Approx(0.5).epsilon(1e-15));
    q1::element_gradient<3>(u, nu_q, f, h, g);
    CHECK(rel_max_error(Vec(g, g + 8), expected) < 1e-15);
    // nu = 1, f = 0: the plain Dirichlet energy 1/2 and gradient -+1/4.
    const double one[8] = {1, 1, 1, 1, 1, 1, 1, 1}, zero[8] = {};
    double one_q[8];
    q1::gauss_values<3>(one, one_q);
    CHECK(q1::element_energy<3>(u, one_q, zero, h) == doctest::Approx(0.5).epsilon(1e-15));
    q1::element_gradient<3>(u, one_q, zero, h, g);
    CHECK(rel_max_error(Vec(g, g + 8), {-0.25, 0.25, -0.25, 0.25, -0.25, 0.25, -0.25, 0.25}) < 1e-15);
  }
  // Through the loss on every backend (fp32 log nu: ~1e-7 relative).
  for_each_device([&](Device device) {
    const Shape shape{1, 1, 2, 2, 2};
    const Tensor u = tensor_on(device, {0, 1, 0, 1, 0, 1, 0, 1}, shape);
    const double l3 = std::log(3.0);
    const Tensor log_nu = tensor_on(device, {0, 0, 0, 0, l3, l3, l3, l3}, shape);
    Tensor du;
    CHECK(PoissonLoss(LossKind::energy, 1.0).evaluate(u, log_nu, 1.0, &du, nullptr) ==
          doctest::Approx(0.5).epsilon(1e-6));
    CHECK(du.shape() == shape);
    CHECK(rel_max_error(host_values(du), expected) < 1e-6);
  });
}

TEST_CASE("3D element gradient and matrix match fp64 central differences of the element energy") {
  const Vec r = random_vec(8 * 3, 90);
  double u[8], nu[8], f[8], nu_q[8], f_q[8], g[8], K[64], F[8];
  for (int a = 0; a < 8; ++a) {
    u[a] = r[static_cast<size_t>(a)];
    nu[a] = std::exp(r[static_cast<size_t>(8 + a)]);
    f[a] = r[static_cast<size_t>(16 + a)];
  }
  const double h[3] = {0.3, 0.2, 0.45};  // unequal sizes: catches a swapped axis
  q1::gauss_values<3>(nu, nu_q);
  q1::gauss_values<3>(f, f_q);
  q1::element_gradient<3>(u, nu_q, f_q, h, g);
  q1::element_matrix<3>(nu_q, h, K);
  q1::element_load<3>(f_q, h, F);
  const Vec fd = fd_gradient([&](const Vec& v) { return Vec{q1::element_energy<3>(v.data(), nu_q, f_q, h)}; },
                             Vec(u, u + 8), Vec{1.0});
  CHECK(rel_max_error(Vec(g, g + 8), fd) < 1e-8);
  Vec ku_f(8);
  for (int a = 0; a < 8; ++a) {
    for (int b = 0; b < 8; ++b) ku_f[static_cast<size_t>(a)] += K[a * 8 + b] * u[b];
    ku_f[static_cast<size_t>(a)] -= F[a];
  }
  CHECK(rel_max_error(Vec(g, g + 8), ku_f) < 1e-13);
  long idx[8];
  const long first[3] = {1, 2, 3}, extents[3] = {5, 4, 6};
  q1::element_nodes<3>(first, extents, idx);
  CHECK(idx[0] == (3 * 4 + 2) * 5 + 1);
  CHECK(idx[7] == (4 * 4 + 3) * 5 + 2);
}

TEST_CASE("3D grid energy equals u^T K u / 2 - F^T u with K and F assembled densely") {
  for_each_device([](Device device) {
    for (auto [nz, ny, nx] : {std::tuple{2, 2, 2}, {3, 4, 5}, {4, 3, 10}}) {
      CAPTURE(nz);
      CAPTURE(ny);
      CAPTURE(nx);
      const Case c = random_case_3d(2, nz, ny, nx, 110);
      const double f = 0.7;
      std::vector<double> per_sample;
      const double total = PoissonLoss(LossKind::energy, f)
                               .evaluate(c.u.to(device), c.log_nu.to(device), 1.0, nullptr, &per_sample);
      REQUIRE(per_sample.size() == 2);
      const size_t per = static_cast<size_t>(nx * ny * nz);
      double expected_total = 0;
      for (size_t s = 0; s < 2; ++s) {
        const Dense3 d = assemble_dense_3d(exp_of(part(c.log_nu_vals, s, per)), nx, ny, nz, f);
        const double expected = energy_reference(d.d, part(c.u_vals, s, per));
        CHECK(per_sample[s] == doctest::Approx(expected).epsilon(1e-12));
        expected_total += expected;
      }
      CHECK(total == doctest::Approx(expected_total).epsilon(1e-12));
    }
  });
}

TEST_CASE("3D energy gradient is K u - F at every node and matches central differences") {
  for_each_device([](Device device) {
    const int nz = 4, ny = 3, nx = 10;  // 9 elements per line: eight lanes and a scalar tail
    const Case c = random_case_3d(2, nz, ny, nx, 120);
    const double f = -1.3;
    Tensor du;
    PoissonLoss(LossKind::energy, f).evaluate(c.u.to(device), c.log_nu.to(device), 1.0, &du, nullptr);
    REQUIRE(du.shape() == c.shape);
    const Vec got = host_values(du);
    const size_t per = static_cast<size_t>(nx * ny * nz);
    for (size_t s = 0; s < 2; ++s) {
      const Dense3 d = assemble_dense_3d(exp_of(part(c.log_nu_vals, s, per)), nx, ny, nz, f);
      const Vec u = part(c.u_vals, s, per);
      CHECK(rel_max_error(part(got, s, per), residual_reference(d.d, u)) < f32_tol);
      const Vec fd = fd_gradient([&](const Vec& v) { return Vec{energy_reference(d.d, v)}; }, u, Vec{1.0});
      CHECK(rel_max_error(part(got, s, per), fd) < f32_tol);
    }
  });
}

TEST_CASE(
    "3D residual loss is ||K u - F||^2 over the free nodes and its gradient matches central differences") {
  for_each_device([](Device device) {
    const int nz = 3, ny = 4, nx = 10;
    const Case c = random_case_3d(2, nz, ny, nx, 130);
    const double f = 0.9;
    Tensor du;
    std::vector<double> per_sample;
    const double total = PoissonLoss(LossKind::residual, f)
                             .evaluate(c.u.to(device), c.log_nu.to(device), 1.0, &du, &per_sample);
    const Vec got = host_values(du);
    const size_t per = static_cast<size_t>(nx * ny * nz);
    double expected_total = 0;
    for (size_t s = 0; s < 2; ++s) {
      const Dense3 d = assemble_dense_3d(exp_of(part(c.log_nu_vals, s, per)), nx, ny, nz, f);
      const Vec u = part(c.u_vals, s, per);
      const double expected = residual_loss_reference(d.d, u);
      CHECK(per_sample[s] == doctest::Approx(expected).epsilon(1e-12));
      expected_total += expected;
      const Vec fd =
          fd_gradient([&](const Vec& v) { return Vec{residual_loss_reference(d.d, v)}; }, u, Vec{1.0});
      CHECK(rel_max_error(part(got, s, per), fd) < f32_tol);
    }
    CHECK(total == doctest::Approx(expected_total).epsilon(1e-12));
  });
}

TEST_CASE("3D apply_stiffness and load_vector equal the densely assembled K u and F") {
  for (auto [nz, ny, nx] : {std::tuple{3, 4, 5}, {2, 2, 11}, {5, 3, 2}}) {
    CAPTURE(nz);
    CAPTURE(ny);
    CAPTURE(nx);
    const size_t N = static_cast<size_t>(nx * ny * nz);
    const Vec nu = exp_of(random_vec(N, 140, -2, 2));
    const Vec u = random_vec(N, 141);
    const Dense3 d = assemble_dense_3d(nu, nx, ny, nz, 0.3);
    Vec ku(N), F(N);
    apply_stiffness(nu.data(), u.data(), ku.data(), nx, ny, nz);
    load_vector(0.3, nx, ny, nz, F.data());
    CHECK(rel_max_error(ku, matvec(d.d, u)) < 1e-13);
    CHECK(rel_max_error(F, d.d.F) < 1e-14);
  }
}

TEST_CASE("3D loss and gradient are bitwise the same on any number of OpenMP threads") {
  const Case c = random_case_3d(2, 9, 10, 11, 150);
  const int saved = omp_get_max_threads();
  for (LossKind kind : {LossKind::energy, LossKind::residual}) {
    const PoissonLoss loss(kind, 0.4);
    omp_set_num_threads(1);
    Tensor du_ref;
    std::vector<double> per_ref;
    const double ref = loss.evaluate(c.u, c.log_nu, 1.0, &du_ref, &per_ref);
    for (int threads : {2, 3, 5}) {
      CAPTURE(threads);
      omp_set_num_threads(threads);
      Tensor du;
      std::vector<double> per;
      CHECK(loss.evaluate(c.u, c.log_nu, 1.0, &du, &per) == ref);
      CHECK(per == per_ref);
      CHECK(values_of(du) == values_of(du_ref));
    }
  }
  omp_set_num_threads(saved);
}

// Boundary lift: exact Dirichlet values on the x = 0 and x = 1 nodes (2D and 3D), the network's value
// elsewhere, and a backward that is the transpose (central differences of an fp64 reference), on every
// backend.
#include "device_testing.hpp"
#include "physics/boundary_lift.hpp"

using namespace pdegen;
using namespace pdegen::testing;

namespace {
// u = m v + (1 - m) g in fp64, m = 0 on columns 0 and nx - 1.
Vec lift_reference(const Vec& v, int64_t nx, double left, double right) {
  Vec u(v.size());
  for (size_t k = 0; k < v.size(); ++k) {
    const int64_t i = static_cast<int64_t>(k) % nx;
    const double m = (i == 0 || i == nx - 1) ? 0.0 : 1.0;
    const double g = i == 0 ? left : (i == nx - 1 ? right : 0.0);
    u[k] = m * v[k] + (1 - m) * g;
  }
  return u;
}
}  // namespace

TEST_CASE("lift forward sets u = 1 at x = 0 and u = 0 at x = 1 and keeps v elsewhere") {
  for_each_device([](Device device) {
    const Shape shape{2, 1, 5, 7};  // Ny != Nx: catches a transposed mask
    const Vec v = random_vec(static_cast<size_t>(shape.numel()), 1, -2, 2);
    const BoundaryLift lift;
    const Tensor u = lift.forward(tensor_on(device, v, shape));
    CHECK(u.device() == device);
    CHECK(u.shape() == shape);
    const Vec got = host_values(u);
    CHECK(rel_max_error(got, lift_reference(values_of(tensor_from(v, shape)), 7, 1, 0)) == 0);
    for (int64_t r = 0; r < 2 * 5; ++r) {
      CHECK(got[static_cast<size_t>(r * 7)] == 1.0);
      CHECK(got[static_cast<size_t>(r * 7 + 6)] == 0.0);
    }
  });
}

TEST_CASE("lift with other boundary values and in place gives the same as out of place") {
  for_each_device([](Device device) {
    const Shape shape{1, 1, 4, 3};
    const Vec v = random_vec(static_cast<size_t>(shape.numel()), 2);
    const BoundaryLift lift(0.25f, -2.0f);
    Tensor in_place = tensor_on(device, v, shape);
    lift.forward_inplace(in_place);
    CHECK(host_values(in_place) == host_values(lift.forward(tensor_on(device, v, shape))));
    CHECK(rel_max_error(host_values(in_place),
                        lift_reference(values_of(tensor_from(v, shape)), 3, 0.25, -2)) == 0);
  });
}

TEST_CASE("lift backward is dv = m du and matches central differences of the fp64 reference") {
  for_each_device([](Device device) {
    const Shape shape{2, 1, 6, 5};
    const Vec v = random_vec(static_cast<size_t>(shape.numel()), 3);
    const Vec w = random_vec(v.size(), 4);
    const BoundaryLift lift;
    const Tensor dv = lift.backward(tensor_on(device, w, shape));
    CHECK(dv.device() == device);
    const Vec fd = fd_gradient([](const Vec& x) { return lift_reference(x, 5, 1, 0); }, v, w);
    CHECK(rel_max_error(host_values(dv), fd) < f32_tol);
    Tensor in_place = tensor_on(device, w, shape);
    lift.backward_inplace(in_place);
    CHECK(host_values(in_place) == host_values(dv));
  });
}

TEST_CASE("lift rejects tensors that are not plain fp32 [b, 1, Ny, Nx] or [b, 1, Nz, Ny, Nx]") {
  for_each_device([](Device device) {
    const BoundaryLift lift;
    CHECK_THROWS_AS(lift.forward(Tensor::zeros(Shape{1, 2, 4, 4}, DType::f32, device)), Error);
    CHECK_THROWS_AS(lift.forward(Tensor::zeros(Shape{1, 1, 4, 4}, DType::f64, device)), Error);
    CHECK_THROWS_AS(lift.backward(Tensor::zeros(Shape{4, 4}, DType::f32, device)), Error);
    CHECK_THROWS_AS(lift.forward(Tensor::zeros(Shape{1, 1, 2, 3, 4, 4}, DType::f32, device)), Error);
  });
}

TEST_CASE("lift on a 3D field [b, 1, Nz, Ny, Nx] fixes the x = 0 and x = 1 planes, backward zeroes them") {
  for_each_device([](Device device) {
    const Shape shape{2, 1, 3, 4, 5};  // Nz, Ny, Nx all different: catches a wrong axis
    const Vec v = random_vec(static_cast<size_t>(shape.numel()), 5, -2, 2);
    const BoundaryLift lift(0.5f, -1.0f);
    const Tensor u = lift.forward(tensor_on(device, v, shape));
    CHECK(u.shape() == shape);
    CHECK(rel_max_error(host_values(u), lift_reference(values_of(tensor_from(v, shape)), 5, 0.5, -1)) == 0);
    const Vec w = random_vec(v.size(), 6);
    const Tensor dv = lift.backward(tensor_on(device, w, shape));
    const Vec fd = fd_gradient([](const Vec& x) { return lift_reference(x, 5, 0.5, -1); }, v, w);
    CHECK(rel_max_error(host_values(dv), fd) < f32_tol);
    Tensor in_place = tensor_on(device, v, shape);
    lift.forward_inplace(in_place);
    CHECK(host_values(in_place) == host_values(u));
  });
}

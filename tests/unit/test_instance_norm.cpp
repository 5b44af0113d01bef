// InstanceNorm: forward against an fp64 two-pass reference with per-(sample, channel) statistics,
// backward (dx, dgamma, dbeta) against central differences of it, plain and blocked, 2D and 3D, on
// every backend; fp16/bf16 storage on the GPU against the fp32 CPU layer.
#include <cmath>

#include "device_testing.hpp"
#include "mixed_precision_testing.hpp"
#include "nn/instance_norm.hpp"

using namespace pdegen;
using namespace pdegen::testing;

namespace {

constexpr double eps = 1e-5;

Vec reference(const Vec& x, const Extents& d, const Vec& gamma, const Vec& beta) {
  Vec y(x.size());
  for (int64_t n = 0; n < d.N; ++n)
    for (int64_t c = 0; c < d.C; ++c) {
      double mean = 0, var = 0;
      for (int64_t s = 0; s < d.S; ++s) mean += x[d.at(n, c, s)] / static_cast<double>(d.S);
      for (int64_t s = 0; s < d.S; ++s)
        var += (x[d.at(n, c, s)] - mean) * (x[d.at(n, c, s)] - mean) / static_cast<double>(d.S);
      const auto k = static_cast<size_t>(c);
      for (int64_t s = 0; s < d.S; ++s)
        y[d.at(n, c, s)] = gamma[k] * (x[d.at(n, c, s)] - mean) / std::sqrt(var + eps) + beta[k];
    }
  return y;
}

// A finalized layer "in" with random gamma in [0.5, 1.5] and beta in [-1, 1] (or none without affine).
struct Fixture : DeviceNormFixture<InstanceNorm> {
  Fixture(Device on, int64_t C, bool affine)
      : DeviceNormFixture(on, "in", InstanceNormConfig{C, eps, affine}) {}
};

// Every (sample, channel) gets its own offset and scale, so per-instance statistics matter.
Vec instance_input(const Extents& d, uint64_t stream) {
  Vec x = random_vec(static_cast<size_t>(d.N * d.C * d.S), stream);
  const Vec offset = random_vec(static_cast<size_t>(d.N * d.C), stream + 100, -3, 3);
  const Vec scale = random_vec(static_cast<size_t>(d.N * d.C), stream + 200, 0.5, 4);
  for (int64_t n = 0; n < d.N; ++n)
    for (int64_t c = 0; c < d.C; ++c) {
      const auto k = static_cast<size_t>(n * d.C + c);
      for (int64_t s = 0; s < d.S; ++s) x[d.at(n, c, s)] = offset[k] + scale[k] * x[d.at(n, c, s)];
    }
  return x;
}

}  // namespace

TEST_CASE("instance norm forward normalises every (sample, channel) with its own mean and variance") {
  for_each_device([](Device device) {
    for_each_norm_case([&](const NormCase& cs) {
      const Extents d(cs.shape);
      Fixture f(device, d.C, cs.affine);
      check_norm_forward_on(f, cs, Mode::train, instance_input(d, 1),
                            [&](const Vec& v, const Vec& g, const Vec& b) { return reference(v, d, g, b); });
    });
  });
}

TEST_CASE("instance norm backward matches central differences for dx, dgamma and dbeta") {
  for_each_device([](Device device) {
    for_each_norm_case([&](const NormCase& cs) {
      const Extents d(cs.shape);
      Fixture f(device, d.C, cs.affine);
      const Vec x = instance_input(d, 2);
      const Vec w = random_vec(x.size(), 3);
      check_norm_backward_on(f, cs, Mode::train, x, w,
                             [&](const Vec& v, const Vec& g, const Vec& b) { return reference(v, d, g, b); });
    });
  });
}

TEST_CASE("instance norm eval mode is train mode: no running statistics") {
  for_each_device([](Device device) {
    const NormCase cs = norm_cases[0];
    const Extents d(cs.shape);
    Fixture f(device, d.C, true);
    const Vec x = instance_input(d, 4);
    const Vec y_train = host_values(f.layer.forward(f.input(x, cs), Mode::train));
    const Vec y_eval = host_values(f.layer.forward(f.input(x, cs), Mode::eval));
    CHECK(rel_max_error(y_eval, y_train) == 0);
  });
}

TEST_CASE("instance norm parameter gradients accumulate and are announced ready") {
  for_each_device([](Device device) {
    const NormCase cs = norm_cases[3];
    const Extents d(cs.shape);
    Fixture f(device, d.C, true);
    std::vector<ParameterRegistry::Id> ready;
    f.registry.set_grad_ready_hook([&](ParameterRegistry::Id id) { ready.push_back(id); });
    const Vec x = instance_input(d, 5), w = random_vec(x.size(), 6);
    for (int i = 0; i < 2; ++i) {
      f.layer.forward(f.input(x, cs), Mode::train);
      f.layer.backward(f.input(w, cs));
    }
    const auto of_beta = [&](const Vec& b) { return reference(x, d, f.gamma, b); };
    Vec twice = fd_gradient(of_beta, f.beta, w);
    for (auto& v : twice) v *= 2;
    CHECK(rel_max_error(f.dbeta(), twice) < 1e-4);
    const auto weight = param_id(f.registry, "in.weight"), bias = param_id(f.registry, "in.bias");
    CHECK(ready == std::vector<ParameterRegistry::Id>{bias, weight, bias, weight});
  });
}

TEST_CASE("instance norm rejects a wrong channel count") {
  for_each_device([](Device device) {
    Fixture f(device, 16, false);
    CHECK_THROWS_AS(f.layer.forward(Tensor::zeros(Shape{2, 8, 4, 4}, DType::f32, device), Mode::train),
                    Error);
  });
}

TEST_CASE(
    "instance norm in fp16 and bf16 on the GPU and bf16 on the CPU matches fp32 within 16-bit rounding") {
  for_each_reduced_precision_backend([](Device device, const HalfType& type16) {
    for_each_norm_case([&](const NormCase& cs) {
      const Extents d(cs.shape);
      const Vec x = instance_input(d, 7), w = random_vec(x.size(), 8);
      Fixture cpu(Device::cpu, d.C, cs.affine), gpu(device, d.C, cs.affine);
      const Vec y32 = values_of(
          cpu.layer.forward(tensor_from(rounded_to(type16.dtype, x), cs.shape, cs.block), Mode::train));
      const Vec dx32 =
          values_of(cpu.layer.backward(tensor_from(rounded_to(type16.dtype, w), cs.shape, cs.block)));

      // The statistics, the normalisation and its gradient are fp32 / double on both backends over
      // the same rounded values: y and dx differ by their one rounding to the 16-bit type.
      const Tensor y = gpu.layer.forward(tensor_as(device, type16.dtype, x, cs.shape, cs.block), Mode::train);
      CHECK(y.device() == device);
      CHECK(y.dtype() == type16.dtype);
      CHECK(y.channel_block() == cs.block);
      CHECK(rel_max_error(values_as_f32(y), y32) < 2 * type16.u);
      const Tensor dx = gpu.layer.backward(tensor_as(device, type16.dtype, w, cs.shape, cs.block));
      CHECK(dx.device() == device);
      CHECK(dx.dtype() == type16.dtype);
      CHECK(dx.channel_block() == cs.block);
      CHECK(rel_max_error(values_as_f32(dx), dx32) < 2 * type16.u);
      // dgamma and dbeta are fp32 sums (in double) of the same values: no 16-bit rounding.
      if (cs.affine) {
        CHECK(rel_max_error(gpu.dgamma(), cpu.dgamma()) < f32_tol);
        CHECK(rel_max_error(gpu.dbeta(), cpu.dbeta()) < f32_tol);
      }
    });
  });
}

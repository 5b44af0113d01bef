// InstanceNorm: forward against an fp64 two-pass reference with per-(sample, channel) statistics,
// backward (dx, dgamma, dbeta) against central differences of it, plain and blocked, 2D and 3D.
#include <cmath>

#include "nn/instance_norm.hpp"
#include "testing.hpp"

using namespace pdegen;
using namespace pdegen::testing;

namespace {

constexpr double eps = 1e-5;

struct Case {
  Shape shape;
  int block;
  bool affine;
};

// 2D and 3D, blocked (C = 16 in blocks of 16, and of 8 as with AVX2) and plain (C = 16 and C = 3),
// with and without gamma/beta.
const Case cases[] = {
    {Shape{2, 16, 5, 3}, 16, true},    {Shape{2, 16, 5, 3}, 1, true},   {Shape{3, 3, 4, 5}, 1, true},
    {Shape{2, 16, 3, 4, 3}, 16, true}, {Shape{2, 3, 3, 2, 4}, 1, true}, {Shape{2, 16, 5, 3}, 16, false},
    {Shape{3, 3, 4, 5}, 1, false},     {Shape{2, 16, 3, 5}, 8, true},
};

struct Dims {
  int64_t N, C, S;
  explicit Dims(const Shape& s) : N(s[0]), C(s[1]), S(s.spatial()) {}
  size_t at(int64_t n, int64_t c, int64_t s) const { return static_cast<size_t>((n * C + c) * S + s); }
};

Vec reference(const Vec& x, const Dims& d, const Vec& gamma, const Vec& beta) {
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

ParameterRegistry::Id param_id(const ParameterRegistry& r, const std::string& name) {
  for (size_t i = 0; i < r.params().size(); ++i)
    if (r.params()[i].name == name) return static_cast<ParameterRegistry::Id>(i);
  FAIL("no parameter " << name);
  return -1;
}

void set_values(const Tensor& t, const Vec& v) {
  Tensor view = t;
  copy_into(view, v);
}

struct Fixture {
  ParameterRegistry registry;
  InstanceNorm layer;
  Vec gamma, beta;
  Fixture(int64_t C, bool affine)
      : layer("in", InstanceNormConfig{C, eps, affine}, registry),
        gamma(static_cast<size_t>(C), 1.0),
        beta(static_cast<size_t>(C), 0.0) {
    registry.finalize(7);
    if (affine) {
      gamma = random_vec(static_cast<size_t>(C), 11, 0.5, 1.5);
      beta = random_vec(static_cast<size_t>(C), 12);
      set_values(registry.value(param_id(registry, "in.weight")), gamma);
      set_values(registry.value(param_id(registry, "in.bias")), beta);
    }
  }
  Vec dgamma() const { return values_of(registry.grad(param_id(registry, "in.weight"))); }
  Vec dbeta() const { return values_of(registry.grad(param_id(registry, "in.bias"))); }
};

// Every (sample, channel) gets its own offset and scale, so per-instance statistics matter.
Vec instance_input(const Dims& d, uint64_t stream) {
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
  for (const Case& cs : cases) {
    CAPTURE(cs.shape.str());
    CAPTURE(cs.block);
    CAPTURE(cs.affine);
    const Dims d(cs.shape);
    Fixture f(d.C, cs.affine);
    const Vec x = instance_input(d, 1);
    const Tensor y = f.layer.forward(tensor_from(x, cs.shape, cs.block), Mode::train);
    CHECK(y.channel_block() == cs.block);
    CHECK(rel_max_error(values_of(y), reference(x, d, f.gamma, f.beta)) < f32_tol);
  }
}

TEST_CASE("instance norm backward matches central differences for dx, dgamma and dbeta") {
  for (const Case& cs : cases) {
    CAPTURE(cs.shape.str());
    CAPTURE(cs.block);
    CAPTURE(cs.affine);
    const Dims d(cs.shape);
    Fixture f(d.C, cs.affine);
    const Vec x = instance_input(d, 2);
    const Vec w = random_vec(x.size(), 3);
    f.layer.forward(tensor_from(x, cs.shape, cs.block), Mode::train);
    const Tensor dx = f.layer.backward(tensor_from(w, cs.shape, cs.block));
    CHECK(dx.channel_block() == cs.block);
    const auto of_x = [&](const Vec& v) { return reference(v, d, f.gamma, f.beta); };
    CHECK(rel_max_error(values_of(dx), fd_gradient(of_x, x, w)) < 1e-4);
    if (cs.affine) {
      const auto of_gamma = [&](const Vec& g) { return reference(x, d, g, f.beta); };
      const auto of_beta = [&](const Vec& b) { return reference(x, d, f.gamma, b); };
      CHECK(rel_max_error(f.dgamma(), fd_gradient(of_gamma, f.gamma, w)) < 1e-4);
      CHECK(rel_max_error(f.dbeta(), fd_gradient(of_beta, f.beta, w)) < 1e-4);
    } else {
      CHECK(f.registry.params().empty());
    }
  }
}

TEST_CASE("instance norm eval mode is train mode: no running statistics") {
  const Case cs = cases[0];
  const Dims d(cs.shape);
  Fixture f(d.C, true);
  const Vec x = instance_input(d, 4);
  const Vec y_train = values_of(f.layer.forward(tensor_from(x, cs.shape, cs.block), Mode::train));
  const Vec y_eval = values_of(f.layer.forward(tensor_from(x, cs.shape, cs.block), Mode::eval));
  CHECK(rel_max_error(y_eval, y_train) == 0);
}

TEST_CASE("instance norm parameter gradients accumulate and are announced ready") {
  const Case cs = cases[3];
  const Dims d(cs.shape);
  Fixture f(d.C, true);
  std::vector<ParameterRegistry::Id> ready;
  f.registry.set_grad_ready_hook([&](ParameterRegistry::Id id) { ready.push_back(id); });
  const Vec x = instance_input(d, 5), w = random_vec(x.size(), 6);
  for (int i = 0; i < 2; ++i) {
    f.layer.forward(tensor_from(x, cs.shape, cs.block), Mode::train);
    f.layer.backward(tensor_from(w, cs.shape, cs.block));
  }
  const auto of_beta = [&](const Vec& b) { return reference(x, d, f.gamma, b); };
  Vec twice = fd_gradient(of_beta, f.beta, w);
  for (auto& v : twice) v *= 2;
  CHECK(rel_max_error(f.dbeta(), twice) < 1e-4);
  const auto weight = param_id(f.registry, "in.weight"), bias = param_id(f.registry, "in.bias");
  CHECK(ready == std::vector<ParameterRegistry::Id>{bias, weight, bias, weight});
}

TEST_CASE("instance norm rejects a wrong channel count") {
  Fixture f(16, false);
  CHECK_THROWS_AS(f.layer.forward(Tensor::zeros(Shape{2, 8, 4, 4}), Mode::train), Error);
}

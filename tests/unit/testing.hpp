// Test helpers: deterministic random data, central finite differences in double precision, and
// error norms. Layer tests follow one recipe: a naive loop reference in fp64, the layer (oneDNN,
// fp32) against it forward, and the layer's backward against central differences of the fp64
// reference for L = sum(w * y) with random w.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "core/parameter.hpp"
#include "core/rng.hpp"
#include "core/tensor.hpp"
#include "nn/layer.hpp"

namespace pdegen::testing {

using Vec = std::vector<double>;

// Why (part of) the current test case cannot run on this machine. A case that then checks nothing
// is reported as skipped with its reasons; test_main.cpp fails a binary whose case checks nothing
// without one.
void skip_reason(const std::string& reason);

// Uniform on [lo, hi) from the counter-based RNG; `stream` keeps different arrays independent.
inline Vec random_vec(size_t n, uint64_t stream, double lo = -1, double hi = 1) {
  Vec v(n);
  for (size_t i = 0; i < n; ++i) v[i] = lo + (hi - lo) * random_uniform(12345, rng_stream::tests + stream, i);
  return v;
}

// Plain fp32 tensor holding v (logical order), optionally re-blocked.
inline Tensor tensor_from(const Vec& v, const Shape& shape, int channel_block = 1) {
  REQUIRE(static_cast<int64_t>(v.size()) == shape.numel());
  Tensor t = Tensor::empty(shape, DType::f32);
  float* p = t.data<float>();
  for (size_t i = 0; i < v.size(); ++i) p[i] = static_cast<float>(v[i]);
  return to_channel_block(t, channel_block);
}

// Logical-order values of any fp32 tensor (plain or blocked).
inline Vec values_of(const Tensor& t) {
  Tensor p = to_plain(t);
  const float* d = p.data<float>();
  return Vec(d, d + p.numel());
}

inline void copy_into(Tensor& dst, const Vec& v) {
  REQUIRE(dst.is_plain());
  REQUIRE(static_cast<int64_t>(v.size()) == dst.numel());
  float* p = dst.data<float>();
  for (size_t i = 0; i < v.size(); ++i) p[i] = static_cast<float>(v[i]);
}

// max_i |a_i - b_i| / max(max_i |b_i|, floor): error relative to the reference's scale.
inline double rel_max_error(const Vec& a, const Vec& b, double floor = 1e-12) {
  REQUIRE(a.size() == b.size());
  double err = 0, scale = floor;
  for (size_t i = 0; i < a.size(); ++i) {
    err = std::max(err, std::abs(a[i] - b[i]));
    scale = std::max(scale, std::abs(b[i]));
  }
  return err / scale;
}

inline double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Central differences of L(v) = sum_k w_k f(v)_k with respect to every entry of v, in fp64.
// Truncation error O(h^2 f''') ~ 1e-12 with h = 1e-5 on smooth f; kinks (ReLU, max) must be kept
// farther than h from the inputs by the caller.
inline Vec fd_gradient(const std::function<Vec(const Vec&)>& f, Vec v, const Vec& w, double h = 1e-5) {
  Vec g(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const double keep = v[i];
    v[i] = keep + h;
    const double lp = dot(w, f(v));
    v[i] = keep - h;
    const double lm = dot(w, f(v));
    v[i] = keep;
    g[i] = (lp - lm) / (2 * h);
  }
  return g;
}

// Finite differences are affordable for ~200 entries; larger tensors are checked on a random subset
// (the function is re-evaluated with only those entries varied, `stream` choosing them).
inline constexpr size_t fd_entries = 200;

// layer_grad against central differences of L(v) = sum_k w_k f(v)_k, on every entry of v or on
// fd_entries distinct random ones.
inline void check_gradient(const std::function<Vec(const Vec&)>& f, const Vec& v, const Vec& loss_weights,
                           const Vec& layer_grad, uint64_t stream, double tol = 1e-4) {
  REQUIRE(layer_grad.size() == v.size());
  if (v.size() <= fd_entries) {
    CHECK(rel_max_error(layer_grad, fd_gradient(f, v, loss_weights)) < tol);
    return;
  }
  // Distinct entries (a repeated one would be overwritten by its twin in f_sub): the fd_entries
  // smallest of one random key per entry.
  const Vec keys = random_vec(v.size(), stream);
  std::vector<size_t> picked(v.size());
  std::iota(picked.begin(), picked.end(), size_t{0});
  std::nth_element(picked.begin(), picked.begin() + fd_entries, picked.end(),
                   [&](size_t a, size_t b) { return keys[a] < keys[b]; });
  picked.resize(fd_entries);
  Vec sub, layer_sub;
  for (size_t i : picked) {
    sub.push_back(v[i]);
    layer_sub.push_back(layer_grad[i]);
  }
  auto f_sub = [&](const Vec& s) {
    Vec full = v;
    for (size_t j = 0; j < picked.size(); ++j) full[picked[j]] = s[j];
    return f(full);
  };
  CHECK(rel_max_error(layer_sub, fd_gradient(f_sub, sub, loss_weights)) < tol);
}

// Extents of an N, C, [D,] H, W shape with D = 1 for 2D, so one loop nest serves both.
struct Grid {
  int64_t n, c, d, h, w;
};
inline Grid grid_of(const Shape& s) {
  return s.rank() == 5 ? Grid{s[0], s[1], s[2], s[3], s[4]} : Grid{s[0], s[1], 1, s[2], s[3]};
}

// An N, C, [D,] H, W shape as N, C and S = prod(spatial), with the logical (plain) index of (n, c, s).
struct Extents {
  int64_t N, C, S;
  explicit Extents(const Shape& s) : N(s[0]), C(s[1]), S(s.spatial()) {}
  size_t at(int64_t n, int64_t c, int64_t s) const { return static_cast<size_t>((n * C + c) * S + s); }
};

inline ParameterRegistry::Id param_id(const ParameterRegistry& r, const std::string& name) {
  for (size_t i = 0; i < r.params().size(); ++i)
    if (r.params()[i].name == name) return static_cast<ParameterRegistry::Id>(i);
  FAIL("no parameter " << name);
  return -1;
}

// Overwrites a plain fp32 tensor (e.g. a registry value, a view into the flat buffer) with v.
inline void set_values(const Tensor& t, const Vec& v) {
  Tensor view = t;
  copy_into(view, v);
}

// fp32 forward/backward against fp64 references: sums of K fp32 products carry ~sqrt(K) * 6e-8
// relative rounding, far below this for the K <= a few thousand of the test shapes, while a wrong
// index or a missing term gives errors of order 1.
inline constexpr double f32_tol = 2e-5;

// ---- layers with a weight and an optional bias (conv, conv_transpose) ------------------------

// A ConvConfig or ConvTransposeConfig (they have the same fields).
template <class Config>
Config conv_config(int ndim, int64_t cin, int64_t cout, int kernel, int stride, int padding,
                   bool bias = true) {
  Config c;
  c.ndim = ndim;
  c.in_channels = cin;
  c.out_channels = cout;
  c.kernel = kernel;
  c.stride = stride;
  c.padding = padding;
  c.bias = bias;
  return c;
}

// One forward and backward of `layer` (weight_id(), bias_id() < 0 without bias) on a fresh input of
// `in_shape` given in `x_block` layout, with dy given in `dy_block` layout: y (of `out_shape`, in
// `y_block` layout) against reference(x, weight, bias) in fp64, and dx (in x's layout), dW and db
// against central differences of it for L = sum(w * y).
using WeightedReference = std::function<Vec(const Vec& x, const Vec& weight, const Vec& bias)>;
template <class L>
void check_weighted_layer(L& layer, ParameterRegistry& registry, const Shape& in_shape,
                          const Shape& out_shape, int x_block, int dy_block, int y_block,
                          const WeightedReference& reference) {
  CAPTURE(in_shape.str());
  CAPTURE(x_block);
  CAPTURE(dy_block);
  registry.zero_grads();
  const bool has_bias = layer.bias_id() >= 0;
  const Vec weight = values_of(registry.value(layer.weight_id()));
  const Vec bias = has_bias ? values_of(registry.value(layer.bias_id())) : Vec{};
  const Vec x = random_vec(static_cast<size_t>(in_shape.numel()), 1);

  const Tensor y = layer.forward(tensor_from(x, in_shape, x_block), Mode::train);
  REQUIRE(y.shape() == out_shape);
  CHECK(y.channel_block() == y_block);
  CHECK(rel_max_error(values_of(y), reference(x, weight, bias)) < f32_tol);

  const Vec loss_weights = random_vec(static_cast<size_t>(out_shape.numel()), 2);
  const Tensor dx = layer.backward(tensor_from(loss_weights, out_shape, dy_block));
  REQUIRE(dx.shape() == in_shape);
  CHECK(dx.channel_block() == x_block);
  check_gradient([&](const Vec& v) { return reference(v, weight, bias); }, x, loss_weights, values_of(dx), 3);
  check_gradient([&](const Vec& v) { return reference(x, v, bias); }, weight, loss_weights,
                 values_of(registry.grad(layer.weight_id())), 4);
  if (has_bias)
    check_gradient([&](const Vec& v) { return reference(x, weight, v); }, bias, loss_weights,
                   values_of(registry.grad(layer.bias_id())), 5);
}

// Two backward calls after one forward of `layer` (with weight and bias) on `in`, x and dy in
// channel block `block`: dW and db double, as gradients accumulate, and each call announces the weight, then
// the bias, ready.
template <class L>
void check_weighted_accumulation(L& layer, ParameterRegistry& registry, const Shape& in, int block) {
  std::vector<ParameterRegistry::Id> ready;
  registry.set_grad_ready_hook([&](ParameterRegistry::Id id) { ready.push_back(id); });
  const Shape out = layer.output_shape(in);
  layer.forward(tensor_from(random_vec(static_cast<size_t>(in.numel()), 1), in, block), Mode::train);
  const Tensor dy = tensor_from(random_vec(static_cast<size_t>(out.numel()), 2), out, block);
  layer.backward(dy);
  const ParameterRegistry::Id w = layer.weight_id(), b = layer.bias_id();
  const Vec dw1 = values_of(registry.grad(w)), db1 = values_of(registry.grad(b));
  CHECK(ready == std::vector<ParameterRegistry::Id>{w, b});
  layer.backward(dy);
  Vec dw1_twice = dw1, db1_twice = db1;
  for (auto& v : dw1_twice) v *= 2;
  for (auto& v : db1_twice) v *= 2;
  CHECK(rel_max_error(values_of(registry.grad(w)), dw1_twice) < 1e-6);
  CHECK(rel_max_error(values_of(registry.grad(b)), db1_twice) < 1e-6);
  CHECK(ready.size() == 4);
}

// A layer built without bias registered exactly one parameter, "<name>.weight" of `weight_shape`.
template <class L>
void check_weight_only(const L& layer, const ParameterRegistry& registry, const Shape& weight_shape) {
  CHECK(layer.bias_id() == -1);
  REQUIRE(registry.params().size() == 1);
  CHECK(registry.params()[0].name == layer.name() + ".weight");
  CHECK(registry.params()[0].shape == weight_shape);
}

// Eval mode gives the train-mode output of x (shape `in`, channel block `block`) but keeps no input,
// so a backward after it is an error.
template <class L>
void check_eval_keeps_no_input(L& layer, const Shape& in, int block) {
  const Tensor x = tensor_from(random_vec(static_cast<size_t>(in.numel()), 1), in, block);
  const Vec train = values_of(layer.forward(x, Mode::train));
  const Vec eval = values_of(layer.forward(x, Mode::eval));
  CHECK(rel_max_error(eval, train) == 0);
  CHECK_THROWS_AS(layer.backward(Tensor::zeros(layer.output_shape(in), DType::f32, Device::cpu, 16)), Error);
}

// The layer's FLOPs on `in`: `forward` for forward and the same for each half of backward.
template <class L>
void check_symmetric_flops(const L& layer, const Shape& in, double forward) {
  const Flops f = layer.flops(in);
  CHECK(f.forward == forward);
  CHECK(f.backward_data == forward);
  CHECK(f.backward_weights == forward);
}

// "<name>.weight" of `weight_shape` and "<name>.bias" [Cout] start uniform on +-bound (their
// largest magnitude within the bound and above half of it).
template <class L>
void check_uniform_init(const L& layer, const ParameterRegistry& registry, double bound,
                        const Shape& weight_shape, int64_t out_channels) {
  for (auto id : {layer.weight_id(), layer.bias_id()}) {
    CHECK(registry.param(id).init.kind == ParamInit::Kind::uniform);
    CHECK(registry.param(id).init.value == doctest::Approx(bound));
    double largest = 0;
    for (double v : values_of(registry.value(id))) largest = std::max(largest, std::abs(v));
    CHECK(largest <= bound);
    CHECK(largest > 0.5 * bound);
  }
  CHECK(registry.param(layer.weight_id()).name == layer.name() + ".weight");
  CHECK(registry.param(layer.weight_id()).shape == weight_shape);
  CHECK(registry.param(layer.bias_id()).name == layer.name() + ".bias");
  CHECK(registry.param(layer.bias_id()).shape == Shape{out_channels});
}

// ---- normalisation layers (batch norm, instance norm) ----------------------------------------

struct NormCase {
  Shape shape;
  int block;
  bool affine;
};

// 2D and 3D, blocked (C = 16 in blocks of 16, and of 8 as with AVX2) and plain (C = 16 and C = 3),
// with and without gamma/beta.
inline const NormCase norm_cases[] = {
    {Shape{2, 16, 5, 3}, 16, true},    {Shape{2, 16, 5, 3}, 1, true},   {Shape{3, 3, 4, 5}, 1, true},
    {Shape{2, 16, 3, 4, 3}, 16, true}, {Shape{2, 3, 3, 2, 4}, 1, true}, {Shape{2, 16, 5, 3}, 16, false},
    {Shape{3, 3, 4, 5}, 1, false},     {Shape{2, 16, 3, 5}, 8, true},
};

// A finalized normalisation layer L named `name` with random gamma in [0.5, 1.5] and beta in [-1, 1]
// (without affine it has no parameters, and gamma = 1, beta = 0 serve the references).
template <class L>
struct NormFixture {
  ParameterRegistry registry;
  L layer;
  std::string name;
  Vec gamma, beta;
  template <class Config>
  NormFixture(const std::string& layer_name, const Config& config)
      : layer(layer_name, config, registry),
        name(layer_name),
        gamma(static_cast<size_t>(config.channels), 1.0),
        beta(static_cast<size_t>(config.channels), 0.0) {
    registry.finalize(7);
    if (config.affine) {
      gamma = random_vec(gamma.size(), 11, 0.5, 1.5);
      beta = random_vec(beta.size(), 12);
      set_values(registry.value(param_id(registry, name + ".weight")), gamma);
      set_values(registry.value(param_id(registry, name + ".bias")), beta);
    }
  }
  Vec dgamma() const { return values_of(registry.grad(param_id(registry, name + ".weight"))); }
  Vec dbeta() const { return values_of(registry.grad(param_id(registry, name + ".bias"))); }
};

// Runs body(case) for every case of norm_cases, naming the case in failure messages.
template <class F>
void for_each_norm_case(F&& body) {
  for (const NormCase& cs : norm_cases) {
    CAPTURE(cs.shape.str());
    CAPTURE(cs.block);
    CAPTURE(cs.affine);
    body(cs);
  }
}

using NormReference = std::function<Vec(const Vec& x, const Vec& gamma, const Vec& beta)>;

// One forward of f.layer in `mode` on x in the case's layout: y keeps the shape and layout and
// matches reference(x, gamma, beta) in fp64.
template <class Fixture>
void check_norm_forward(Fixture& f, const NormCase& cs, Mode mode, const Vec& x,
                        const NormReference& reference) {
  const Tensor y = f.layer.forward(tensor_from(x, cs.shape, cs.block), mode);
  CHECK(y.channel_block() == cs.block);
  CHECK(y.shape() == cs.shape);
  CHECK(rel_max_error(values_of(y), reference(x, f.gamma, f.beta)) < f32_tol);
}

// One forward in `mode` and one backward of f.layer on x and dy = w in the case's layout: dx, and
// with affine dgamma and dbeta, against central differences of reference(x, gamma, beta) for
// L = sum(w * y); without affine, the layer must have no parameters.
template <class Fixture>
void check_norm_backward(Fixture& f, const NormCase& cs, Mode mode, const Vec& x, const Vec& w,
                         const NormReference& reference) {
  f.layer.forward(tensor_from(x, cs.shape, cs.block), mode);
  const Tensor dx = f.layer.backward(tensor_from(w, cs.shape, cs.block));
  CHECK(dx.channel_block() == cs.block);
  const auto of_x = [&](const Vec& v) { return reference(v, f.gamma, f.beta); };
  CHECK(rel_max_error(values_of(dx), fd_gradient(of_x, x, w)) < 1e-4);
  if (cs.affine) {
    const auto of_gamma = [&](const Vec& g) { return reference(x, g, f.beta); };
    const auto of_beta = [&](const Vec& b) { return reference(x, f.gamma, b); };
    CHECK(rel_max_error(f.dgamma(), fd_gradient(of_gamma, f.gamma, w)) < 1e-4);
    CHECK(rel_max_error(f.dbeta(), fd_gradient(of_beta, f.beta, w)) < 1e-4);
  } else {
    CHECK(f.registry.params().empty());
  }
}

}  // namespace pdegen::testing

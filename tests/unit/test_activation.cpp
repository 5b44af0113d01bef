// Activations: forward against the textbook formulas in fp64, backward against central differences,
// on every backend; fp16/bf16 storage on the GPU against the fp32 CPU layer.
#include <cmath>

#include "device_testing.hpp"
#include "mixed_precision_testing.hpp"
#include "nn/activation.hpp"

using namespace pdegen;
using namespace pdegen::testing;

namespace {
double reference(ActivationKind k, double x, double alpha) {
  switch (k) {
    case ActivationKind::identity:
      return x;
    case ActivationKind::relu:
      return x > 0 ? x : 0;
    case ActivationKind::leaky_relu:
      return x > 0 ? x : alpha * x;
    case ActivationKind::tanh:
      return std::tanh(x);
    case ActivationKind::silu:
      return x / (1 + std::exp(-x));
    case ActivationKind::sigmoid:
      return 1 / (1 + std::exp(-x));
  }
  return 0;
}

void check_activation(ActivationKind kind, int channel_block, Device device) {
  const Shape shape{2, 16, 5, 3};
  Vec x = random_vec(static_cast<size_t>(shape.numel()), 1, -3, 3);
  // Keep inputs away from the kink at 0, where finite differences straddle two slopes.
  for (auto& v : x)
    if (std::abs(v) < 1e-3) v = 0.5;
  const Vec w = random_vec(x.size(), 2);
  const double alpha = 0.1;
  auto ref = [&](const Vec& in) {
    Vec out(in.size());
    for (size_t i = 0; i < in.size(); ++i) out[i] = reference(kind, in[i], alpha);
    return out;
  };

  Activation layer(kind, static_cast<float>(alpha));
  Tensor y = layer.forward(tensor_on(device, x, shape, channel_block), Mode::train);
  CHECK(y.device() == device);
  CHECK(y.channel_block() == channel_block);
  CHECK(rel_max_error(host_values(y), ref(x)) < f32_tol);

  Tensor dx = layer.backward(tensor_on(device, w, shape, channel_block));
  CHECK(dx.device() == device);
  CHECK(rel_max_error(host_values(dx), fd_gradient(ref, x, w)) < 1e-4);
}
// How a layer keeps what its backward reads (the U-Net's memory-saving variants).
enum class Variant { out_of_place, in_place, sign_only, sign_only_in_place };

// The CPU layer run as `variant`, against the fp64 formulas and central differences, and bit for bit
// against the ordinary out-of-place layer. Shapes whose element count is no multiple of 32 run the
// sign bits' last, partial word.
void check_variant(ActivationKind kind, const Shape& shape, int channel_block, Variant variant) {
  Vec x = random_vec(static_cast<size_t>(shape.numel()), 3, -3, 3);
  for (auto& v : x)
    if (std::abs(v) < 1e-3) v = 0.5;  // away from the kink at 0
  const Vec w = random_vec(x.size(), 4);
  const double alpha = 0.1;
  auto ref = [&](const Vec& in) {
    Vec out(in.size());
    for (size_t i = 0; i < in.size(); ++i) out[i] = reference(kind, in[i], alpha);
    return out;
  };

  Activation ordinary(kind, static_cast<float>(alpha)), layer(kind, static_cast<float>(alpha));
  const Vec y_ordinary = values_of(ordinary.forward(tensor_from(x, shape, channel_block), Mode::train));
  const Vec dx_ordinary = values_of(ordinary.backward(tensor_from(w, shape, channel_block)));

  const bool in_place = variant == Variant::in_place || variant == Variant::sign_only_in_place;
  if (variant == Variant::sign_only || variant == Variant::sign_only_in_place)
    layer.set_keeps_sign_only(true);
  const Tensor input = tensor_from(x, shape, channel_block);
  const Tensor y = in_place ? layer.forward_in_place(input, Mode::train) : layer.forward(input, Mode::train);
  // In place exactly where the derivative can be read off y.
  if (in_place) CHECK((y.raw() == input.raw()) == layer.runs_in_place());
  CHECK(y.channel_block() == channel_block);
  CHECK(rel_max_error(values_of(y), ref(x)) < f32_tol);
  CHECK(values_of(y) == y_ordinary);

  const Tensor dy = tensor_from(w, shape, channel_block);
  const Tensor dx = in_place ? layer.backward_in_place(dy) : layer.backward(dy);
  if (in_place) CHECK(dx.raw() == dy.raw());
  CHECK(dx.channel_block() == channel_block);
  CHECK(rel_max_error(values_of(dx), fd_gradient(ref, x, w)) < 1e-4);
  CHECK(values_of(dx) == dx_ordinary);
}

}  // namespace

TEST_CASE("in-place forward and backward match the formulas and the out-of-place layer bit for bit") {
  for (auto kind : {ActivationKind::relu, ActivationKind::leaky_relu, ActivationKind::tanh,
                    ActivationKind::silu, ActivationKind::sigmoid, ActivationKind::identity}) {
    for (int block : {1, 16}) {
      CAPTURE(activation_name(kind));
      CAPTURE(block);
      check_variant(kind, Shape{2, 16, 5, 3}, block, Variant::in_place);
      check_variant(kind, Shape{1, 16, 3, 2, 3}, block, Variant::in_place);
    }
  }
}

TEST_CASE(
    "ReLU and LeakyReLU keeping only sign bits, in place or not, match the formulas and the ordinary layer "
    "bit "
    "for bit") {
  for (auto kind : {ActivationKind::relu, ActivationKind::leaky_relu}) {
    for (int block : {1, 16}) {
      CAPTURE(activation_name(kind));
      CAPTURE(block);
      for (Variant variant : {Variant::sign_only, Variant::sign_only_in_place}) {
        check_variant(kind, Shape{2, 16, 5, 3}, block, variant);
        check_variant(kind, Shape{1, 16, 3, 2, 3}, block, variant);
      }
    }
    // 35 values: a partial last word
    check_variant(kind, Shape{1, 1, 5, 7}, 1, Variant::sign_only);
    check_variant(kind, Shape{1, 1, 5, 7}, 1, Variant::sign_only_in_place);
  }
}

TEST_CASE("only ReLU and LeakyReLU with alpha >= 0 may keep only the sign: others refuse") {
  CHECK(Activation(ActivationKind::relu).derivative_is_sign_only());
  CHECK(Activation(ActivationKind::leaky_relu, 0.1f).derivative_is_sign_only());
  CHECK_FALSE(Activation(ActivationKind::leaky_relu, -0.5f).derivative_is_sign_only());
  CHECK_FALSE(Activation(ActivationKind::leaky_relu, -0.5f).runs_in_place());
  CHECK_FALSE(Activation(ActivationKind::silu).runs_in_place());
  for (auto kind :
       {ActivationKind::tanh, ActivationKind::silu, ActivationKind::sigmoid, ActivationKind::identity}) {
    Activation layer(kind);
    CHECK_THROWS_AS(layer.set_keeps_sign_only(true), Error);
  }
}

TEST_CASE("release_saved drops what forward kept: a backward after it is refused") {
  for (bool sign_only : {false, true}) {
    Activation layer(ActivationKind::relu);
    layer.set_keeps_sign_only(sign_only);
    const Shape shape{1, 16, 4, 4};
    layer.forward(tensor_from(random_vec(static_cast<size_t>(shape.numel()), 5), shape, 16), Mode::train);
    layer.release_saved();
    CHECK_THROWS_AS(layer.backward(Tensor::zeros(shape, DType::f32, Device::cpu, 16)), Error);
  }
}

TEST_CASE("activations match fp64 formulas and central differences, plain and blocked layouts") {
  for_each_device([](Device device) {
    for (auto kind : {ActivationKind::relu, ActivationKind::leaky_relu, ActivationKind::tanh,
                      ActivationKind::silu, ActivationKind::sigmoid, ActivationKind::identity}) {
      for (int block : {1, 16}) {
        CAPTURE(activation_name(kind));
        CAPTURE(block);
        check_activation(kind, block, device);
      }
    }
  });
}

TEST_CASE("unknown activation name is a user error listing the known ones") {
  CHECK_THROWS_WITH_AS(parse_activation("relux"), doctest::Contains("expected identity, relu"), UserError);
}

TEST_CASE("tanh, sigmoid and silu keep fp32 relative accuracy from tiny to saturated inputs, any size") {
  // Tiny values (where 1 - 2 / (e^2x + 1) would cancel), both sides of tanh's switch at 0.625, and
  // saturation; 47 values, so the vector loops run their remainder too.
  Vec x{0, 1e-30, 1e-7, 1e-3, 0.3, 0.6249, 0.625, 0.6251, 1, 2.5, 5, 9, 20, 50, 87, 100, 1e4, 1e30};
  for (size_t i = 0, n = x.size(); i < n; ++i) x.push_back(-x[i]);
  for (double v : {0.05, 0.1, 0.2, 0.4, 0.5, 0.7, 0.9, 1.5, 3.0, 4.0, 7.0}) x.push_back(v);
  const Shape shape{1, 1, 1, static_cast<int64_t>(x.size())};
  for_each_device([&](Device device) {
    for (auto kind : {ActivationKind::tanh, ActivationKind::sigmoid, ActivationKind::silu}) {
      CAPTURE(activation_name(kind));
      Activation layer(kind);
      // The inputs as fp32 values, so the reference sees exactly what the layer does.
      const Vec xf = values_of(tensor_from(x, shape));
      const Vec y = host_values(layer.forward(tensor_on(device, xf, shape), Mode::train));
      const Vec dx = host_values(layer.backward(tensor_on(device, Vec(x.size(), 1.0), shape)));
      for (size_t i = 0; i < x.size(); ++i) {
        CAPTURE(xf[i]);
        const double want = reference(kind, xf[i], 0);
        // 2 ulp of the result where it is a normal float; below FLT_MIN (sigmoid(-100) = 3.7e-44) the
        // subnormals carry fewer digits, so there an absolute FLT_MIN.
        CHECK(std::abs(y[i] - want) <= 2.4e-7 * std::abs(want) + 1.2e-38);
        CHECK(std::isfinite(dx[i]));
      }
    }
  });
}

TEST_CASE("activations in fp16 and bf16 on the GPU and bf16 on the CPU match fp32 within 16-bit rounding") {
  for_each_reduced_precision_backend([](Device device, const HalfType& type16) {
    const double alpha = 0.1;
    for (const Shape& shape : {Shape{2, 16, 5, 3}, Shape{2, 16, 3, 2, 3}})
      for (int block : {1, 16})
        for (auto kind : {ActivationKind::relu, ActivationKind::leaky_relu, ActivationKind::tanh,
                          ActivationKind::silu, ActivationKind::sigmoid, ActivationKind::identity}) {
          CAPTURE(shape.str());
          CAPTURE(block);
          CAPTURE(activation_name(kind));
          const Vec x = random_vec(static_cast<size_t>(shape.numel()), 1, -3, 3);
          const Vec w = random_vec(x.size(), 2);
          Activation cpu(kind, static_cast<float>(alpha)), gpu(kind, static_cast<float>(alpha));
          const Vec y32 =
              values_of(cpu.forward(tensor_from(rounded_to(type16.dtype, x), shape, block), Mode::train));
          const Vec dx32 = values_of(cpu.backward(tensor_from(rounded_to(type16.dtype, w), shape, block)));

          const Tensor y = gpu.forward(tensor_as(device, type16.dtype, x, shape, block), Mode::train);
          CHECK(y.device() == device);
          CHECK(y.dtype() == type16.dtype);
          CHECK(y.channel_block() == block);
          // One rounding of y.
          CHECK(rel_max_error(values_as_f32(y), y32) < 2 * type16.u);

          const Tensor dx = gpu.backward(tensor_as(device, type16.dtype, w, shape, block));
          CHECK(dx.device() == device);
          CHECK(dx.dtype() == type16.dtype);
          CHECK(dx.channel_block() == block);
          // One rounding of dx; tanh and sigmoid also read the rounded y: dy (1 - y^2) and dy y (1 - y)
          // move by at most 2 u |dy| y^2 and u |dy| y, up to 4 u against max |dx| ~ max |dy| / 4.
          const double roundings = activation_backward_reads_output(kind) ? 8 : 2;
          CHECK(rel_max_error(values_as_f32(dx), dx32) < roundings * type16.u);
        }
  });
}

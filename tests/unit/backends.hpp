// Backend parameterisation of the unit tests: the same test body runs on every device this binary
// and machine can use. The CPU always; the GPU where the CUDA backend is built and a device is
// present, otherwise each call records why the GPU half is skipped (skip_reason: a case left with
// nothing to check is reported skipped), so a green run without a GPU never looks like a tested GPU.
//
// Recipe: inputs are made on the host (testing.hpp), moved with .to(device), and the results moved
// back and checked against the same fp64 references. GPU activations are plain, so a layout the test
// asks for (block 16) is the CPU's alone: block_on() gives the layout each device takes.
#pragma once

#include <doctest/doctest.h>

#include <set>
#include <string>
#include <vector>

#include "backend/cpu/dnnl_context.hpp"
#include "backend/cuda/cuda_context.hpp"
#include "core/tensor.hpp"
#include "testing.hpp"

namespace pdegen::testing {

inline std::vector<pdegen::Device> test_devices() {
  static const std::string skipped = [] {
    std::string reason;
    return cuda::available(&reason) ? std::string() : reason;
  }();
  if (skipped.empty()) return {Device::cpu, Device::cuda};
  skip_reason("cuda: " + skipped);
  return {Device::cpu};
}

// The channel block a test input takes on `device`: as asked on the CPU, plain on the GPU.
inline int block_on(Device device, int block) { return device == Device::cpu ? block : 1; }

// False when the same layer configuration and input shape already ran on this non-CPU device in this
// binary: the GPU takes every layout as plain, so the CPU's blocked and plain variants of a case are
// one case there, and running it again only costs time.
template <class Config>
bool first_gpu_run(Device device, const Config& c, const Shape& in_shape) {
  if (device == Device::cpu) return true;
  static std::set<std::string> done;
  return done
      .insert(fmt::format("{} {} {}->{} k{} s{} p{} b{} {}", device_name(device), c.ndim, c.in_channels,
                          c.out_channels, c.kernel, c.stride, c.padding, c.bias, in_shape.str()))
      .second;
}

// Logical-order values of an fp32 tensor on any device.
inline Vec host_values(const Tensor& t) { return values_of(t.to(Device::cpu)); }

// A host tensor of v (logical order) in `block` layout, on `device` (plain there unless the CPU).
inline Tensor device_tensor(Device device, const Vec& v, const Shape& shape, int block) {
  return tensor_from(v, shape, block_on(device, block)).to(device);
}

// Pins the GPU convolutions to fp32 FMA math for a test's lifetime (the default lets sm_80+ use TF32
// tensor cores, 10-bit products far outside the fp32 tolerances), restoring the previous mode.
class ScopedConvMath {
 public:
  explicit ScopedConvMath(cuda::ConvMath math) : previous_(cuda::conv_math()) { cuda::set_conv_math(math); }
  ~ScopedConvMath() { cuda::set_conv_math(previous_); }
  ScopedConvMath(const ScopedConvMath&) = delete;
  ScopedConvMath& operator=(const ScopedConvMath&) = delete;

 private:
  cuda::ConvMath previous_;
};

// cpu::conv_algorithm() set for one scope (convolutions built in it keep their algorithm).
class ScopedConvAlgorithm {
 public:
  explicit ScopedConvAlgorithm(cpu::ConvAlgorithm algorithm) : previous_(cpu::conv_algorithm()) {
    cpu::set_conv_algorithm(algorithm);
  }
  ~ScopedConvAlgorithm() { cpu::set_conv_algorithm(previous_); }
  ScopedConvAlgorithm(const ScopedConvAlgorithm&) = delete;
  ScopedConvAlgorithm& operator=(const ScopedConvAlgorithm&) = delete;

 private:
  cpu::ConvAlgorithm previous_;
};

// ---- layers with a weight and an optional bias, on any device (testing.hpp has the CPU ones) ---

// check_weighted_layer on `device`: x and dy made in the asked layouts (plain on the GPU), y expected
// in `y_block` on the CPU and plain on the GPU, everything compared on the host; the registry must
// be finalized on `device`. `forward_tol` loosens the forward check where reduced-precision math is
// under test.
template <class L>
void check_weighted_layer_on(Device device, L& layer, ParameterRegistry& registry, const Shape& in_shape,
                             const Shape& out_shape, int x_block, int dy_block, int y_block,
                             const WeightedReference& reference, double forward_tol = f32_tol,
                             double gradient_tol = 1e-4) {
  CAPTURE(device_name(device));
  CAPTURE(in_shape.str());
  CAPTURE(x_block);
  CAPTURE(dy_block);
  registry.zero_grads();
  const bool has_bias = layer.bias_id() >= 0;
  const Vec weight = host_values(registry.value(layer.weight_id()));
  const Vec bias = has_bias ? host_values(registry.value(layer.bias_id())) : Vec{};
  const Vec x = random_vec(static_cast<size_t>(in_shape.numel()), 1);

  const Tensor y = layer.forward(device_tensor(device, x, in_shape, x_block), Mode::train);
  REQUIRE(y.shape() == out_shape);
  CHECK(y.device() == device);
  CHECK(y.channel_block() == block_on(device, y_block));
  CHECK(rel_max_error(host_values(y), reference(x, weight, bias)) < forward_tol);

  const Vec loss_weights = random_vec(static_cast<size_t>(out_shape.numel()), 2);
  const Tensor dx = layer.backward(device_tensor(device, loss_weights, out_shape, dy_block));
  REQUIRE(dx.shape() == in_shape);
  CHECK(dx.device() == device);
  CHECK(dx.channel_block() == block_on(device, x_block));
  check_gradient([&](const Vec& v) { return reference(v, weight, bias); }, x, loss_weights, host_values(dx),
                 3, gradient_tol);
  check_gradient([&](const Vec& v) { return reference(x, v, bias); }, weight, loss_weights,
                 host_values(registry.grad(layer.weight_id())), 4, gradient_tol);
  if (has_bias)
    check_gradient([&](const Vec& v) { return reference(x, weight, v); }, bias, loss_weights,
                   host_values(registry.grad(layer.bias_id())), 5, gradient_tol);
}

// check_weighted_accumulation on `device`: two backwards after one forward double dW and db, and
// each announces the weight, then the bias, ready.
template <class L>
void check_weighted_accumulation_on(Device device, L& layer, ParameterRegistry& registry, const Shape& in,
                                    int block) {
  CAPTURE(device_name(device));
  std::vector<ParameterRegistry::Id> ready;
  registry.set_grad_ready_hook([&](ParameterRegistry::Id id) { ready.push_back(id); });
  const Shape out = layer.output_shape(in);
  layer.forward(device_tensor(device, random_vec(static_cast<size_t>(in.numel()), 1), in, block),
                Mode::train);
  const Tensor dy = device_tensor(device, random_vec(static_cast<size_t>(out.numel()), 2), out, block);
  layer.backward(dy);
  const ParameterRegistry::Id w = layer.weight_id(), b = layer.bias_id();
  const Vec dw1 = host_values(registry.grad(w)), db1 = host_values(registry.grad(b));
  CHECK(ready == std::vector<ParameterRegistry::Id>{w, b});
  layer.backward(dy);
  Vec dw1_twice = dw1, db1_twice = db1;
  for (auto& v : dw1_twice) v *= 2;
  for (auto& v : db1_twice) v *= 2;
  CHECK(rel_max_error(host_values(registry.grad(w)), dw1_twice) < 1e-6);
  CHECK(rel_max_error(host_values(registry.grad(b)), db1_twice) < 1e-6);
  CHECK(ready.size() == 4);
}

// A conv-family layer told to free its input in backward (as the U-Net does, so dx can reuse that
// memory) gives dW, db and dx bit for bit as without, and a second backward needs a new forward.
template <class L>
void check_frees_input_in_backward_on(Device device, L& layer, ParameterRegistry& registry, const Shape& in,
                                      int block) {
  CAPTURE(device_name(device));
  const Shape out = layer.output_shape(in);
  const Tensor x = device_tensor(device, random_vec(static_cast<size_t>(in.numel()), 1), in, block);
  const Tensor dy = device_tensor(device, random_vec(static_cast<size_t>(out.numel()), 2), out, block);
  auto run = [&] {
    registry.zero_grads();
    layer.forward(x, Mode::train);
    const Vec dx = host_values(layer.backward(dy));
    return std::vector<Vec>{dx, host_values(registry.grad(layer.weight_id())),
                            host_values(registry.grad(layer.bias_id()))};
  };
  layer.set_frees_input_in_backward(false);
  const std::vector<Vec> keeping = run();
  layer.set_frees_input_in_backward(true);
  const std::vector<Vec> freeing = run();
  for (size_t i = 0; i < keeping.size(); ++i) CHECK(freeing[i] == keeping[i]);
  if (device == Device::cpu) CHECK_THROWS_AS(layer.backward(dy), Error);
  layer.forward(x, Mode::train);
  layer.release_saved();
  CHECK_THROWS_AS(layer.backward(dy), Error);
}

// check_eval_keeps_no_input on `device`: eval gives the train-mode output, and backward after it
// is an error.
template <class L>
void check_eval_keeps_no_input_on(Device device, L& layer, const Shape& in, int block) {
  CAPTURE(device_name(device));
  const Tensor x = device_tensor(device, random_vec(static_cast<size_t>(in.numel()), 1), in, block);
  const Vec train = host_values(layer.forward(x, Mode::train));
  const Vec eval = host_values(layer.forward(x, Mode::eval));
  CHECK(rel_max_error(eval, train) == 0);
  CHECK_THROWS_AS(
      layer.backward(Tensor::zeros(layer.output_shape(in), DType::f32, device, block_on(device, 16))), Error);
}

}  // namespace pdegen::testing

// fp16/bf16 activations on the GPU, and bf16 on the CPU, against the fp32 CPU layer: the recipe of the
// layer tests "... in fp16 and bf16 match fp32 within 16-bit rounding".
//
// The inputs (x, dy) are rounded to the 16-bit type once: on the host for the CPU run (which then
// computes in fp32 on those values), on the device (to_dtype) for the GPU run, with the same
// round-to-nearest-even. Both backends therefore see identical values, and the GPU, computing in fp32
// too, differs from the CPU only by the one rounding of each value it stores: at most the unit
// roundoff u of the result (fp16: 11-bit significand, u = 2^-11 ~ 4.9e-4; bf16: 8 bits, u = 2^-8 ~
// 3.9e-3), plus fp32 noise (~1e-6). Where a backward reads a 16-bit value the forward stored (tanh's
// and sigmoid's y), that rounding enters too; each test says which roundings its tolerance covers.
// A wrong index, a missing conversion or a result stored in the wrong type gives errors of order 1.
#pragma once

#include <doctest/doctest.h>

#include <cmath>

#include "backend/cpu/dnnl_context.hpp"
#include "backends.hpp"
#include "device_testing.hpp"
#include "testing.hpp"

namespace pdegen::testing {

// A 16-bit storage type and its unit roundoff (half an ulp, relative).
struct HalfType {
  DType dtype;
  double u;
};
inline constexpr HalfType half_types[] = {{DType::f16, 1.0 / 2048}, {DType::bf16, 1.0 / 256}};

// v rounded to `dtype` and back on the host: what both backends compute with.
inline Vec rounded_to(DType dtype, const Vec& v) {
  const Shape shape{static_cast<int64_t>(v.size())};
  return values_of(to_dtype(to_dtype(tensor_from(v, shape), dtype), DType::f32));
}

// v as a `dtype` tensor in `block` layout on `device`, converted there (the device to_dtype).
inline Tensor tensor_as(Device device, DType dtype, const Vec& v, const Shape& shape, int block = 1) {
  return to_dtype(tensor_from(v, shape, block).to(device), dtype);
}

// Logical-order values of a tensor of any storage type on any device (widened where it lives).
inline Vec values_as_f32(const Tensor& t) { return values_of(to_dtype(t, DType::f32).to(Device::cpu)); }

// Runs body(device, type16) for every GPU of test_devices() with both 16-bit types, and for the CPU
// with bf16 where it has AVX512-BF16 or AMX (elsewhere pdegen refuses bf16 on the CPU). Whatever
// cannot run here is named as skipped (test_devices() also gives the GPU's reason once per binary).
template <class F>
void for_each_reduced_precision_backend(F&& body) {
  bool gpu = false;
  for (Device device : test_devices()) {
    if (device == Device::cpu) continue;
    for (const HalfType& type16 : half_types) {
      CAPTURE(device_name(device));
      CAPTURE(dtype_name(type16.dtype));
      body(device, type16);
    }
    gpu = true;
  }
  if (!gpu) skip_reason("fp16/bf16 on the GPU: no cuda device under test");
  if (!cpu::has_fast_bf16()) return skip_reason("bf16 on the CPU: this CPU has neither AVX512-BF16 nor AMX");
  CAPTURE("cpu bf16");
  body(Device::cpu, half_types[1]);
}

// A layer with a weight and a bias (Conv, ConvTranspose) on `device` with x and dy in `dtype` against the
// fp32 CPU layer fed the same (16-bit representable) x and dy, for two steps with different weights (the
// 16-bit weight copy must follow the registry), each with two backwards (dW and db must accumulate over the
// 16-bit scratch). What separates the two is then the layer's own rounding: the weights rounded to 16 bits (u
// relative each, entering sums of K products accumulated in fp32, so their errors add like sqrt(K)
// times a term), the 16-bit results (u) and the bias added after the convolution was rounded (u);
// an emulation of exactly these roundings on these shapes gives at most 1.3 u relative to the largest
// entry, so 6 u (fp16 2.9e-3, bf16 2.3e-2) leaves room for cuDNN's summation orders while a wrong
// index, a stale weight copy or a lost accumulation is off by 1e-1 or more. db is summed in fp32 from
// 16-bit dy that hold the reference's values exactly: fp32 tolerance.
template <class L, class Config>
void check_weighted_layer_in_half(Device device, const Config& c, const Shape& in_shape, HalfType type16) {
  const DType dtype = type16.dtype;
  CAPTURE(in_shape.str());
  ParameterRegistry cpu_registry, gpu_registry;
  L cpu_layer("mixed", c, cpu_registry), gpu_layer("mixed", c, gpu_registry);
  cpu_registry.finalize(7);
  gpu_registry.finalize(7, device);
  const Shape out_shape = cpu_layer.output_shape(in_shape);
  const Tensor x16 =
      to_dtype(tensor_from(random_vec(static_cast<size_t>(in_shape.numel()), 1), in_shape), dtype);
  const Tensor dy16 =
      to_dtype(tensor_from(random_vec(static_cast<size_t>(out_shape.numel()), 2), out_shape), dtype);
  const Tensor x32 = to_dtype(x16, DType::f32), dy32 = to_dtype(dy16, DType::f32);
  const double tol = 6 * type16.u;
  const ParameterRegistry::Id w = cpu_layer.weight_id(), b = cpu_layer.bias_id();
  for (int step = 0; step < 2; ++step) {
    CAPTURE(step);
    if (step == 1) {
      const double bound = 1 / std::sqrt(static_cast<double>(cpu_registry.value(w).numel() / c.out_channels));
      const Vec weight = random_vec(static_cast<size_t>(cpu_registry.value(w).numel()), 3, -bound, bound);
      set_values_on(cpu_registry.value(w), weight);
      set_values_on(gpu_registry.value(w), weight);
    }
    REQUIRE(host_values(gpu_registry.value(w)) == values_of(cpu_registry.value(w)));
    cpu_registry.zero_grads();
    gpu_registry.zero_grads();
    const Tensor y_ref = cpu_layer.forward(x32, Mode::train);
    const Tensor y = gpu_layer.forward(x16.to(device), Mode::train);
    REQUIRE(y.shape() == out_shape);
    CHECK(y.dtype() == dtype);
    CHECK(y.device() == device);
    CHECK(rel_max_error(values_as_f32(y), values_of(y_ref)) < tol);
    Tensor dx_ref, dx;
    for (int pass = 0; pass < 2; ++pass) {
      dx_ref = cpu_layer.backward(dy32);
      dx = gpu_layer.backward(dy16.to(device));
    }
    REQUIRE(dx.shape() == in_shape);
    CHECK(dx.dtype() == dtype);
    CHECK(rel_max_error(values_as_f32(dx), values_of(dx_ref)) < tol);
    CHECK(rel_max_error(host_values(gpu_registry.grad(w)), values_of(cpu_registry.grad(w))) < tol);
    CHECK(rel_max_error(host_values(gpu_registry.grad(b)), values_of(cpu_registry.grad(b))) < f32_tol);
  }
}

// The CPU convolutions take fp32 and bf16: fp16 (which oneDNN lacks there) and fp64 are refused, and
// so is a dy whose type is not the forward input's (the backward passes take one type for x and dy).
template <class L, class Config>
void check_weighted_layer_refuses_fp16_on_cpu(const Config& c) {
  ParameterRegistry registry;
  L layer("typed", c, registry);
  registry.finalize(7);
  const Shape in{1, 16, 4, 4};
  for (DType dtype : {DType::f16, DType::f64})
    CHECK_THROWS_AS(layer.forward(Tensor::zeros(in, dtype), Mode::train), Error);
  layer.forward(Tensor::zeros(in), Mode::train);
  CHECK_THROWS_AS(layer.backward(Tensor::zeros(layer.output_shape(in), DType::f16)), Error);
  CHECK(layer.backward(Tensor::zeros(layer.output_shape(in))).defined());
}

}  // namespace pdegen::testing

// fp16/bf16 activations on the GPU against the fp32 CPU layer: the recipe of the layer tests "... in
// fp16 and bf16 on the GPU match fp32 within 16-bit rounding".
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

#include "backends.hpp"
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

// Runs body(device, type16) for every GPU of test_devices() and both 16-bit types. Without a GPU
// it checks nothing and says so (test_devices() also gives its reason once per binary).
template <class F>
void for_each_gpu_half_type(F&& body) {
  bool ran = false;
  for (Device device : test_devices()) {
    if (device == Device::cpu) continue;
    for (const HalfType& type16 : half_types) {
      CAPTURE(device_name(device));
      CAPTURE(dtype_name(type16.dtype));
      body(device, type16);
    }
    ran = true;
  }
  if (!ran) MESSAGE("fp16/bf16 on the GPU: skipped (no cuda device under test)");
}

}  // namespace pdegen::testing

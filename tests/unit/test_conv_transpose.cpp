// ConvTranspose: forward against a naive fp64 scatter loop (PyTorch's definition), backward (dx, dW,
// db) against central differences of that loop for L = sum(w * y), in 2D and 3D, for blocked and
// plain inputs and gradients; every promise on each device of test_devices() (the GPU's activations
// are plain, so its cases use plain layouts). fp16/bf16 activations (GPU only) are checked against the
// fp32 CPU layer within 16-bit rounding.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/dnnl_context.hpp"
#include "backends.hpp"
#include "device_testing.hpp"
#include "nn/conv_transpose.hpp"
#include "testing.hpp"

using namespace pdegen;
using namespace pdegen::testing;

namespace {

Shape expected_output(const ConvTransposeConfig& c, const Shape& in) {
  Shape out{in[0], c.out_channels};
  for (int a = 2; a < in.rank(); ++a) out.push_back((in[a] - 1) * c.stride - 2 * c.padding + c.kernel);
  return out;
}

// y[n,o,z*s-p+k] += W[i,o,k] x[n,i,z] over inputs z and taps k landing inside the output, plus b[o].
Vec reference(const ConvTransposeConfig& c, const Shape& in_shape, const Vec& x, const Vec& weight,
              const Vec& bias) {
  const Grid in = grid_of(in_shape), out = grid_of(expected_output(c, in_shape));
  const bool is3d = c.ndim == 3;
  const int64_t k = c.kernel, kd = is3d ? k : 1, sd = is3d ? c.stride : 1, pd = is3d ? c.padding : 0;
  const int64_t plane = out.d * out.h * out.w;
  Vec y(static_cast<size_t>(out.n * out.c * plane));
  for (int64_t n = 0; n < out.n; ++n)
    for (int64_t o = 0; o < out.c; ++o)
      for (int64_t s = 0; s < plane; ++s)
        y[static_cast<size_t>((n * out.c + o) * plane + s)] = c.bias ? bias[static_cast<size_t>(o)] : 0.0;
  for (int64_t n = 0; n < in.n; ++n)
    for (int64_t i = 0; i < in.c; ++i)
      for (int64_t z = 0; z < in.d; ++z)
        for (int64_t r = 0; r < in.h; ++r)
          for (int64_t q = 0; q < in.w; ++q) {
            const double xv = x[static_cast<size_t>((((n * in.c + i) * in.d + z) * in.h + r) * in.w + q)];
            for (int64_t o = 0; o < out.c; ++o)
              for (int64_t a = 0; a < kd; ++a)
                for (int64_t b = 0; b < k; ++b)
                  for (int64_t e = 0; e < k; ++e) {
                    const int64_t oz = z * sd - pd + a, orow = r * c.stride - c.padding + b,
                                  oq = q * c.stride - c.padding + e;
                    if (oz < 0 || oz >= out.d || orow < 0 || orow >= out.h || oq < 0 || oq >= out.w) continue;
                    y[static_cast<size_t>((((n * out.c + o) * out.d + oz) * out.h + orow) * out.w + oq)] +=
                        weight[static_cast<size_t>((((i * out.c + o) * kd + a) * k + b) * k + e)] * xv;
                  }
          }
  return y;
}

// One forward and backward of `up` on `device` against the fp64 reference (see
// check_weighted_layer_on), the GPU in fp32 math unless `math` says otherwise, with the tolerances
// for it.
void check_layer(Device device, ConvTranspose& up, ParameterRegistry& registry, const Shape& in_shape,
                 int x_block, int dy_block, cuda::ConvMath math = cuda::ConvMath::fp32,
                 double forward_tol = f32_tol, double gradient_tol = 1e-4) {
  const ScopedConvMath gpu_math(math);
  const ConvTransposeConfig& c = up.config();
  check_weighted_layer_on(
      device, up, registry, in_shape, expected_output(c, in_shape), x_block, dy_block,
      cpu::channel_block_for(c.out_channels),
      [&](const Vec& x, const Vec& w, const Vec& b) { return reference(c, in_shape, x, w, b); }, forward_tol,
      gradient_tol);
}

void check_conv_transpose(const ConvTransposeConfig& c, const Shape& in_shape, int x_block, int dy_block) {
  for (Device device : test_devices()) {
    if (!first_gpu_run(device, c, in_shape)) continue;
    ParameterRegistry registry;
    ConvTranspose up("up", c, registry);
    registry.finalize(7, device);
    check_layer(device, up, registry, in_shape, x_block, dy_block);
  }
}

ConvTransposeConfig config(int ndim, int64_t cin, int64_t cout, int kernel, int stride, int padding,
                           bool bias = true) {
  return conv_config<ConvTransposeConfig>(ndim, cin, cout, kernel, stride, padding, bias);
}

// ---- 16-bit activations on the GPU (mixed precision) ----

// Unit roundoff of a 16-bit storage type: half its spacing at 1 (fp16 stores 10 mantissa bits, bf16 7).
double unit_roundoff(DType t) { return t == DType::f16 ? std::ldexp(1.0, -11) : std::ldexp(1.0, -8); }

// Logical-order values of a plain tensor of any storage type on any device, widened to fp32.
Vec widened_values(const Tensor& t) { return values_of(to_dtype(t.to(Device::cpu), DType::f32)); }

// ConvTranspose on `device` with x and dy in `dtype` against the fp32 CPU layer fed the same (16-bit
// representable) x and dy, for two steps with different weights (the 16-bit weight copy must follow
// the registry), each with two backwards (dW and db must accumulate over the 16-bit scratch).
// What separates the two is then the layer's own rounding: the weights rounded to 16 bits (u
// relative each, entering sums of K products accumulated in fp32, so their errors add like sqrt(K)
// times a term), the 16-bit results (u) and the bias added after the convolution was rounded (u);
// an emulation of exactly these roundings on these shapes gives at most 1.3 u relative to the largest
// entry, so 6 u (fp16 2.9e-3, bf16 2.3e-2) leaves room for cuDNN's summation orders while a wrong
// index, a stale weight copy or a lost accumulation is off by 1e-1 or more. db is summed in fp32 from
// 16-bit dy that hold the reference's values exactly: fp32 tolerance.
template <class Config>
void check_reduced_precision(Device device, const Config& c, const Shape& in_shape, DType dtype) {
  CAPTURE(device_name(device));
  CAPTURE(dtype_name(dtype));
  CAPTURE(in_shape.str());
  ParameterRegistry cpu_registry, gpu_registry;
  ConvTranspose cpu_layer("mixed", c, cpu_registry), gpu_layer("mixed", c, gpu_registry);
  cpu_registry.finalize(7);
  gpu_registry.finalize(7, device);
  const Shape out_shape = cpu_layer.output_shape(in_shape);
  const Tensor x16 =
      to_dtype(tensor_from(random_vec(static_cast<size_t>(in_shape.numel()), 1), in_shape), dtype);
  const Tensor dy16 =
      to_dtype(tensor_from(random_vec(static_cast<size_t>(out_shape.numel()), 2), out_shape), dtype);
  const Tensor x32 = to_dtype(x16, DType::f32), dy32 = to_dtype(dy16, DType::f32);
  const double tol = 6 * unit_roundoff(dtype);
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
    CHECK(rel_max_error(widened_values(y), values_of(y_ref)) < tol);
    Tensor dx_ref, dx;
    for (int pass = 0; pass < 2; ++pass) {
      dx_ref = cpu_layer.backward(dy32);
      dx = gpu_layer.backward(dy16.to(device));
    }
    REQUIRE(dx.shape() == in_shape);
    CHECK(dx.dtype() == dtype);
    CHECK(rel_max_error(widened_values(dx), values_of(dx_ref)) < tol);
    CHECK(rel_max_error(host_values(gpu_registry.grad(w)), values_of(cpu_registry.grad(w))) < tol);
    CHECK(rel_max_error(host_values(gpu_registry.grad(b)), values_of(cpu_registry.grad(b))) < f32_tol);
  }
}

}  // namespace

TEST_CASE("conv_transpose 2D k2 s2 (the U-Net up-sampler) matches the fp64 loop and central differences") {
  check_conv_transpose(config(2, 32, 16, 2, 2, 0), Shape{2, 32, 4, 3}, 16, 16);
  // Plain input of a blockable width, plain dy: dx comes back plain.
  check_conv_transpose(config(2, 16, 16, 2, 2, 0), Shape{1, 16, 3, 4}, 1, 1);
  check_conv_transpose(config(2, 1, 16, 2, 2, 0), Shape{2, 1, 3, 3}, 1, 16);
  check_conv_transpose(config(2, 16, 1, 2, 2, 0), Shape{1, 16, 3, 3}, 16, 1);
}

TEST_CASE("conv_transpose 2D k3 s1 p1 matches the fp64 loop and central differences, blocked and plain") {
  check_conv_transpose(config(2, 16, 16, 3, 1, 1), Shape{2, 16, 5, 4}, 16, 16);
  check_conv_transpose(config(2, 3, 16, 3, 1, 1), Shape{1, 3, 4, 5}, 1, 1);
}

TEST_CASE("conv_transpose 3D k2 s2 matches the fp64 loop and central differences, blocked and plain") {
  check_conv_transpose(config(3, 32, 16, 2, 2, 0), Shape{1, 32, 2, 3, 2}, 16, 16);
  check_conv_transpose(config(3, 1, 16, 2, 2, 0), Shape{2, 1, 2, 2, 3}, 1, 1);
  check_conv_transpose(config(3, 16, 16, 3, 1, 1), Shape{1, 16, 3, 2, 4}, 16, 16);
}

TEST_CASE("conv_transpose without bias registers only a weight and matches the fp64 loop") {
  for (Device device : test_devices()) {
    ParameterRegistry registry;
    ConvTranspose up("nobias", config(2, 32, 16, 2, 2, 0, false), registry);
    registry.finalize(7, device);
    check_weight_only(up, registry, Shape{32, 16, 2, 2});
    check_layer(device, up, registry, Shape{2, 32, 3, 4}, 16, 16);
  }
}

TEST_CASE("conv_transpose gradients accumulate over backwards and weight and bias are announced ready") {
  for (Device device : test_devices()) {
    const ScopedConvMath gpu_math(cuda::ConvMath::fp32);
    ParameterRegistry registry;
    ConvTranspose up("acc", config(2, 32, 16, 2, 2, 0), registry);
    registry.finalize(7, device);
    check_weighted_accumulation_on(device, up, registry, Shape{2, 32, 3, 4}, 16);
  }
}

TEST_CASE("conv_transpose told dx is not needed gives the same dW and db and returns no dx") {
  for (Device device : test_devices())
    for (int block : {1, 16}) {
      CAPTURE(device_name(device));
      CAPTURE(block);
      const ScopedConvMath gpu_math(cuda::ConvMath::fp32);
      ParameterRegistry registry;
      ConvTranspose up("up", config(2, 16, 16, 2, 2, 0), registry);
      registry.finalize(7, device);
      const Shape in{2, 16, 3, 4}, out = up.output_shape(in);
      const Tensor x = device_tensor(device, random_vec(static_cast<size_t>(in.numel()), 1), in, block);
      const Tensor dy = device_tensor(device, random_vec(static_cast<size_t>(out.numel()), 2), out, 16);
      up.forward(x, Mode::train);
      REQUIRE(up.backward(dy).defined());
      const Vec dw = host_values(registry.grad(up.weight_id())),
                db = host_values(registry.grad(up.bias_id()));
      registry.zero_grads();
      up.set_needs_input_grad(false);
      up.forward(x, Mode::train);
      CHECK_FALSE(up.backward(dy).defined());
      CHECK(rel_max_error(host_values(registry.grad(up.weight_id())), dw) == 0);
      CHECK(rel_max_error(host_values(registry.grad(up.bias_id())), db) == 0);
    }
}

TEST_CASE("conv_transpose rebuilds its primitives when the input shape changes") {
  for (Device device : test_devices()) {
    ParameterRegistry registry;
    ConvTranspose up("reshape", config(2, 16, 16, 2, 2, 0), registry);
    registry.finalize(7, device);
    check_layer(device, up, registry, Shape{1, 16, 3, 3}, 16, 16);
    check_layer(device, up, registry, Shape{2, 16, 4, 5}, 16, 16);
    check_layer(device, up, registry, Shape{1, 16, 3, 3}, 1, 16);
  }
}

TEST_CASE("conv_transpose in eval mode gives the train-mode output but keeps no input") {
  for (Device device : test_devices()) {
    ParameterRegistry registry;
    ConvTranspose up("eval", config(2, 16, 16, 2, 2, 0), registry);
    registry.finalize(7, device);
    check_eval_keeps_no_input_on(device, up, Shape{1, 16, 4, 4}, 16);
  }
}

TEST_CASE(
    "conv_transpose on the GPU with TF32 tensor-core math stays within TF32 rounding of the fp64 loop") {
  // As for conv: TF32 products carry ~5e-4 relative rounding; 1e-2 still catches a wrong index.
  for (Device device : test_devices()) {
    if (device != Device::cuda) continue;
    ParameterRegistry registry;
    ConvTranspose up("tf32", config(2, 32, 16, 2, 2, 0), registry);
    registry.finalize(7, device);
    check_layer(device, up, registry, Shape{2, 32, 5, 4}, 16, 16, cuda::ConvMath::tf32, 1e-2, 1e-2);
  }
}

TEST_CASE("conv_transpose output shape and flops follow (in-1)s - 2p + k and 2 N Cin S_in Cout k^ndim") {
  ParameterRegistry registry;
  ConvTranspose up("up", config(3, 32, 16, 3, 2, 1), registry);
  const Shape in{2, 32, 4, 5, 3};
  CHECK(up.output_shape(in) == Shape{2, 16, 7, 9, 5});
  check_symmetric_flops(up, in, 2.0 * 2 * 32 * (4 * 5 * 3) * 16 * 27);
  CHECK(up.kind() == "conv_transpose");
  CHECK_THROWS_AS(up.output_shape(Shape{2, 32, 4, 5}), Error);
}

TEST_CASE("conv_transpose initialises weight [Cin, Cout, k...] and bias within +-1/sqrt(Cout k^ndim)") {
  ParameterRegistry registry;
  ConvTranspose up("init", config(3, 8, 4, 2, 2, 0), registry);
  registry.finalize(11);
  check_uniform_init(up, registry, 1 / std::sqrt(4.0 * 8), Shape{8, 4, 2, 2, 2}, 4);
}

TEST_CASE("conv_transpose rejects an input whose channel count or rank does not match its config") {
  ParameterRegistry registry;
  ConvTranspose up("strict", config(2, 16, 16, 2, 2, 0), registry);
  registry.finalize(7);
  CHECK_THROWS_AS(up.forward(Tensor::zeros(Shape{1, 8, 5, 5}), Mode::train), Error);
  CHECK_THROWS_AS(up.forward(Tensor::zeros(Shape{1, 16, 5, 5, 5}), Mode::train), Error);
}

TEST_CASE("conv_transpose in fp16 and bf16 on the GPU matches fp32 within 16-bit rounding") {
  // Only the GPU takes 16-bit activations; without one this is skipped with the message above.
  for (Device device : test_devices()) {
    if (device == Device::cpu) continue;
    for (DType dtype : {DType::f16, DType::bf16}) {
      check_reduced_precision(device, config(2, 16, 8, 2, 2, 0), Shape{2, 16, 4, 3}, dtype);
      check_reduced_precision(device, config(3, 8, 8, 2, 2, 0), Shape{1, 8, 3, 2, 3}, dtype);
    }
  }
}

TEST_CASE("conv_transpose refuses fp16/bf16 input on the CPU and a dy of another type than its input") {
  ParameterRegistry registry;
  ConvTranspose layer("typed", config(2, 16, 16, 2, 2, 0), registry);
  registry.finalize(7);
  const Shape in{1, 16, 4, 4};
  for (DType dtype : {DType::f16, DType::bf16, DType::f64})
    CHECK_THROWS_AS(layer.forward(Tensor::zeros(in, dtype), Mode::train), Error);
  layer.forward(Tensor::zeros(in), Mode::train);
  CHECK_THROWS_AS(layer.backward(Tensor::zeros(layer.output_shape(in), DType::f16)), Error);
  CHECK(layer.backward(Tensor::zeros(layer.output_shape(in))).defined());
}

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
#include "mixed_precision_testing.hpp"
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

}  // namespace

TEST_CASE("conv_transpose 2D k2 s2 (the U-Net up-sampler) matches the fp64 loop and central differences") {
  check_conv_transpose(config(2, 32, 16, 2, 2, 0), Shape{2, 32, 4, 3}, 16, 16);
  // Plain input of a blockable width, plain dy: dx comes back plain.
  check_conv_transpose(config(2, 16, 16, 2, 2, 0), Shape{1, 16, 3, 4}, 1, 1);
  check_conv_transpose(config(2, 1, 16, 2, 2, 0), Shape{2, 1, 3, 3}, 1, 16);
  check_conv_transpose(config(2, 16, 1, 2, 2, 0), Shape{1, 16, 3, 3}, 16, 1);
}

TEST_CASE("conv_transpose with channel counts that do not fill a block runs on padded channels, exactly") {
  check_conv_transpose(config(2, 16, 8, 2, 2, 0), Shape{2, 16, 3, 4}, 16, 1);
  check_conv_transpose(config(2, 8, 12, 2, 2, 0), Shape{1, 8, 3, 3}, 1, 1);
  check_conv_transpose(config(3, 16, 4, 2, 2, 0), Shape{1, 16, 2, 3, 2}, 16, 1);
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

TEST_CASE(
    "conv_transpose freeing its input in backward gives the same dW, db and dx, and needs a forward per "
    "backward") {
  for (Device device : test_devices())
    for (int block : {1, 16}) {
      CAPTURE(block);
      ParameterRegistry registry;
      ConvTranspose up("frees", config(2, 32, 16, 2, 2, 0), registry);
      registry.finalize(7, device);
      check_frees_input_in_backward_on(device, up, registry, Shape{2, 32, 3, 4}, block);
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

TEST_CASE(
    "conv_transpose in fp16 and bf16 on the GPU and bf16 on the CPU matches fp32 within 16-bit rounding") {
  // The GPU takes fp16 and bf16, the CPU bf16 where it has the instructions; elsewhere skipped with
  // the message above. The last shape's output is wider than cpu::widest_bf16_image: on the CPU it
  // runs widened to fp32 (oneDNN 2.6.3's AMX kernels fail there), with the same contract.
  for_each_reduced_precision_backend([](Device device, HalfType type16) {
    check_weighted_layer_in_half<ConvTranspose>(device, config(2, 16, 8, 2, 2, 0), Shape{2, 16, 4, 3},
                                                type16);
    check_weighted_layer_in_half<ConvTranspose>(device, config(2, 16, 16, 2, 2, 0), Shape{1, 16, 2, 550},
                                                type16);
    check_weighted_layer_in_half<ConvTranspose>(device, config(3, 8, 8, 2, 2, 0), Shape{1, 8, 3, 2, 3},
                                                type16);
  });
}

TEST_CASE("conv_transpose refuses fp16 input on the CPU and a dy of another type than its input") {
  check_weighted_layer_refuses_fp16_on_cpu<ConvTranspose>(config(2, 16, 16, 2, 2, 0));
}

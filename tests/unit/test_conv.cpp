// Conv: forward against a naive fp64 loop, backward (dx, dW, db) against central differences of that
// loop for L = sum(w * y), in 2D and 3D, for blocked and plain inputs and gradients; every promise on
// each device of test_devices() (the GPU's activations are plain, so its cases use plain layouts).
// fp16/bf16 activations (GPU only) are checked against the fp32 CPU layer within 16-bit rounding.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/dnnl_context.hpp"
#include "backends.hpp"
#include "device_testing.hpp"
#include "mixed_precision_testing.hpp"
#include "nn/conv.hpp"
#include "testing.hpp"

using namespace pdegen;
using namespace pdegen::testing;

namespace {

Shape expected_output(const ConvConfig& c, const Shape& in) {
  Shape out{in[0], c.out_channels};
  for (int a = 2; a < in.rank(); ++a) out.push_back((in[a] + 2 * c.padding - c.kernel) / c.stride + 1);
  return out;
}

// y[n,o,z] = b[o] + sum_{i,k} W[o,i,k] x[n,i,z*s-p+k], zero outside the input.
Vec reference(const ConvConfig& c, const Shape& in_shape, const Vec& x, const Vec& weight, const Vec& bias) {
  const Grid in = grid_of(in_shape), out = grid_of(expected_output(c, in_shape));
  const bool is3d = c.ndim == 3;
  const int64_t k = c.kernel, kd = is3d ? k : 1, sd = is3d ? c.stride : 1, pd = is3d ? c.padding : 0;
  Vec y(static_cast<size_t>(out.n * out.c * out.d * out.h * out.w));
  size_t at = 0;
  for (int64_t n = 0; n < out.n; ++n)
    for (int64_t o = 0; o < out.c; ++o)
      for (int64_t z = 0; z < out.d; ++z)
        for (int64_t r = 0; r < out.h; ++r)
          for (int64_t q = 0; q < out.w; ++q) {
            double acc = c.bias ? bias[static_cast<size_t>(o)] : 0.0;
            for (int64_t i = 0; i < in.c; ++i)
              for (int64_t a = 0; a < kd; ++a)
                for (int64_t b = 0; b < k; ++b)
                  for (int64_t e = 0; e < k; ++e) {
                    const int64_t iz = z * sd - pd + a, ir = r * c.stride - c.padding + b,
                                  iq = q * c.stride - c.padding + e;
                    if (iz < 0 || iz >= in.d || ir < 0 || ir >= in.h || iq < 0 || iq >= in.w) continue;
                    acc += weight[static_cast<size_t>((((o * in.c + i) * kd + a) * k + b) * k + e)] *
                           x[static_cast<size_t>((((n * in.c + i) * in.d + iz) * in.h + ir) * in.w + iq)];
                  }
            y[at++] = acc;
          }
  return y;
}

// One forward and backward of `conv` on `device` against the fp64 reference (see
// check_weighted_layer_on), the GPU in fp32 math unless `math` says otherwise, with the tolerances
// for it.
void check_layer(Device device, Conv& conv, ParameterRegistry& registry, const Shape& in_shape, int x_block,
                 int dy_block, cuda::ConvMath math = cuda::ConvMath::fp32, double forward_tol = f32_tol,
                 double gradient_tol = 1e-4) {
  const ScopedConvMath gpu_math(math);
  const ConvConfig& c = conv.config();
  check_weighted_layer_on(
      device, conv, registry, in_shape, expected_output(c, in_shape), x_block, dy_block,
      cpu::channel_block_for(c.out_channels),
      [&](const Vec& x, const Vec& w, const Vec& b) { return reference(c, in_shape, x, w, b); }, forward_tol,
      gradient_tol);
}

void check_conv(const ConvConfig& c, const Shape& in_shape, int x_block, int dy_block) {
  for (Device device : test_devices()) {
    if (!first_gpu_run(device, c, in_shape)) continue;
    ParameterRegistry registry;
    Conv conv("conv", c, registry);
    registry.finalize(7, device);
    check_layer(device, conv, registry, in_shape, x_block, dy_block);
  }
}

ConvConfig config(int ndim, int64_t cin, int64_t cout, int kernel, int stride, int padding,
                  bool bias = true) {
  return conv_config<ConvConfig>(ndim, cin, cout, kernel, stride, padding, bias);
}

// Backward with and without dx on the same forward: the parameter gradients must not change (they
// are computed first either way), dx must be undefined when switched off and come back when on.
void check_skipped_input_grad(Device device, const ConvConfig& c, const Shape& in, int x_block) {
  CAPTURE(device_name(device));
  CAPTURE(in.str());
  CAPTURE(x_block);
  const ScopedConvMath gpu_math(cuda::ConvMath::fp32);
  ParameterRegistry registry;
  Conv conv("first", c, registry);
  registry.finalize(7, device);
  std::vector<ParameterRegistry::Id> ready;
  registry.set_grad_ready_hook([&](ParameterRegistry::Id id) { ready.push_back(id); });
  const Shape out = conv.output_shape(in);
  const Tensor x = device_tensor(device, random_vec(static_cast<size_t>(in.numel()), 1), in, x_block);
  const Tensor dy = device_tensor(device, random_vec(static_cast<size_t>(out.numel()), 2), out,
                                  cpu::channel_block_for(c.out_channels));
  auto backward = [&] {
    registry.zero_grads();
    conv.forward(x, Mode::train);
    return conv.backward(dy);
  };

  CHECK(conv.needs_input_grad());
  const Tensor dx = backward();
  REQUIRE(dx.defined());
  const Vec dw = host_values(registry.grad(conv.weight_id())),
            db = host_values(registry.grad(conv.bias_id()));

  conv.set_needs_input_grad(false);
  CHECK_FALSE(backward().defined());
  CHECK(rel_max_error(host_values(registry.grad(conv.weight_id())), dw) == 0);
  CHECK(rel_max_error(host_values(registry.grad(conv.bias_id())), db) == 0);
  const auto w = conv.weight_id(), b = conv.bias_id();
  CHECK(ready == std::vector<ParameterRegistry::Id>{w, b, w, b});

  conv.set_needs_input_grad(true);
  const Tensor dx_again = backward();
  REQUIRE(dx_again.defined());
  CHECK(dx_again.channel_block() == block_on(device, x_block));
  CHECK(rel_max_error(host_values(dx_again), host_values(dx)) == 0);
}

}  // namespace

TEST_CASE("conv 2D k3 s1 p1 with bias matches the fp64 loop and central differences, blocked and plain") {
  const ConvConfig c16 = config(2, 16, 16, 3, 1, 1);
  check_conv(c16, Shape{2, 16, 7, 6}, 16, 16);
  // A plain input of a blockable width is accepted, and dx comes back plain; dy may be plain too.
  check_conv(c16, Shape{2, 16, 7, 6}, 1, 1);
  check_conv(config(2, 3, 16, 3, 1, 1), Shape{2, 3, 7, 6}, 1, 16);
  check_conv(config(2, 1, 16, 3, 1, 1), Shape{1, 1, 8, 5}, 1, 1);
}

TEST_CASE("conv with channel counts that do not fill a block runs on padded channels, exactly") {
  // 8 -> 8, 12 -> 4, 8 -> 16, 16 -> 12: the primitives see 16 channels with zeros in the padding.
  check_conv(config(2, 8, 8, 3, 1, 1), Shape{2, 8, 7, 6}, 1, 1);
  check_conv(config(2, 12, 4, 3, 1, 1), Shape{1, 12, 5, 6}, 1, 1);
  check_conv(config(2, 8, 16, 3, 1, 1), Shape{2, 8, 6, 5}, 1, 16);
  check_conv(config(2, 16, 12, 3, 1, 1), Shape{1, 16, 5, 5}, 16, 1);
  check_conv(config(3, 8, 8, 3, 1, 1), Shape{1, 8, 4, 3, 5}, 1, 1);
}

TEST_CASE("conv 2D k2 s2 p0 down-samples like the fp64 loop, odd extents dropping the last row") {
  check_conv(config(2, 16, 32, 2, 2, 0), Shape{2, 16, 8, 7}, 16, 16);
  check_conv(config(2, 3, 16, 2, 2, 0), Shape{1, 3, 6, 5}, 1, 1);
}

TEST_CASE("pointwise head conv 16 -> 1 returns a plain output and matches the fp64 loop") {
  const ConvConfig head = ConvConfig::pointwise(16, 1);
  CHECK(head.kernel == 1);
  CHECK(head.stride == 1);
  CHECK(head.padding == 0);
  CHECK(head.bias);
  CHECK(cpu::channel_block_for(1) == 1);
  check_conv(head, Shape{2, 16, 6, 5}, 16, 1);
  check_conv(ConvConfig::pointwise(16, 1, 3), Shape{1, 16, 3, 4, 5}, 16, 1);
}

TEST_CASE("conv 3D k3 p1 matches the fp64 loop and central differences, blocked and plain") {
  check_conv(config(3, 16, 16, 3, 1, 1), Shape{1, 16, 4, 5, 3}, 16, 16);
  check_conv(config(3, 1, 16, 3, 1, 1), Shape{2, 1, 4, 3, 5}, 1, 16);
  check_conv(config(3, 16, 16, 2, 2, 0), Shape{1, 16, 4, 4, 5}, 16, 1);
}

// oneDNN has no JIT backward-weights kernel for these (blocked, image smaller than the kernel); the
// layer then pads the input explicitly, which must give the same gradients.
TEST_CASE(
    "conv 3D k3 p1 on images smaller than the kernel (2x2x2, 1x2x2) matches the fp64 loop and central "
    "differences") {
  check_conv(config(3, 16, 16, 3, 1, 1), Shape{2, 16, 2, 2, 2}, 16, 16);
  check_conv(config(3, 32, 16, 3, 1, 1), Shape{1, 32, 1, 2, 2}, 16, 16);
  check_conv(config(2, 16, 16, 3, 1, 1), Shape{2, 16, 2, 1}, 16, 16);
}

TEST_CASE("conv without bias registers only a weight and matches the fp64 loop") {
  for (Device device : test_devices()) {
    ParameterRegistry registry;
    Conv conv("nobias", config(2, 16, 16, 3, 1, 1, false), registry);
    registry.finalize(7, device);
    check_weight_only(conv, registry, Shape{16, 16, 3, 3});
    check_layer(device, conv, registry, Shape{2, 16, 5, 6}, 16, 16);
  }
}

TEST_CASE("conv gradients accumulate over backwards and weight and bias are announced ready") {
  for (Device device : test_devices()) {
    const ScopedConvMath gpu_math(cuda::ConvMath::fp32);
    ParameterRegistry registry;
    Conv conv("acc", config(2, 16, 16, 3, 1, 1), registry);
    registry.finalize(7, device);
    check_weighted_accumulation_on(device, conv, registry, Shape{2, 16, 5, 4}, 16);
  }
}

TEST_CASE("conv told dx is not needed gives the same dW and db, announces them, and returns no dx") {
  // The network's first conv (1 -> 16, plain input) is the case this is for; blocked and 3D too.
  for (Device device : test_devices()) {
    check_skipped_input_grad(device, config(2, 1, 16, 3, 1, 1), Shape{2, 1, 9, 7}, 1);
    check_skipped_input_grad(device, config(2, 16, 16, 3, 1, 1), Shape{1, 16, 6, 5}, 16);
    check_skipped_input_grad(device, config(3, 1, 16, 3, 1, 1), Shape{1, 1, 4, 5, 3}, 1);
  }
}

TEST_CASE(
    "conv freeing its input in backward gives the same dW, db and dx, and needs a forward per backward") {
  for (Device device : test_devices())
    for (int block : {1, 16}) {
      CAPTURE(block);
      ParameterRegistry registry;
      Conv conv("frees", config(2, 16, 16, 3, 1, 1), registry);
      registry.finalize(7, device);
      check_frees_input_in_backward_on(device, conv, registry, Shape{2, 16, 6, 5}, block);
    }
}

TEST_CASE("conv rebuilds its primitives when the input shape changes") {
  for (Device device : test_devices()) {
    ParameterRegistry registry;
    Conv conv("reshape", config(2, 16, 16, 3, 1, 1), registry);
    registry.finalize(7, device);
    check_layer(device, conv, registry, Shape{1, 16, 6, 6}, 16, 16);
    check_layer(device, conv, registry, Shape{2, 16, 9, 7}, 16, 16);
    check_layer(device, conv, registry, Shape{1, 16, 6, 6}, 1, 16);
  }
}

TEST_CASE("conv in eval mode gives the train-mode output but keeps no input, so backward is an error") {
  for (Device device : test_devices()) {
    ParameterRegistry registry;
    Conv conv("eval", config(2, 16, 16, 3, 1, 1), registry);
    registry.finalize(7, device);
    check_eval_keeps_no_input_on(device, conv, Shape{1, 16, 5, 5}, 16);
  }
}

TEST_CASE("conv on the GPU with TF32 tensor-core math stays within TF32 rounding of the fp64 loop") {
  // TF32 keeps 10 mantissa bits of each factor (relative rounding 2^-11 ~ 5e-4), so sums of K of
  // them deviate by ~sqrt(K) 5e-4 of the terms' scale: 1e-2 separates that from a wrong index.
  for (Device device : test_devices()) {
    if (device != Device::cuda) continue;
    ParameterRegistry registry;
    Conv conv("tf32", config(2, 32, 32, 3, 1, 1), registry);
    registry.finalize(7, device);
    check_layer(device, conv, registry, Shape{2, 32, 9, 8}, 16, 16, cuda::ConvMath::tf32, 1e-2, 1e-2);
  }
}

TEST_CASE(
    "conv on the CPU as Winograd stays within its rounding of the fp64 loop, and falls back to direct") {
  // Winograd F(4x4, 3x3) transforms 6x6 input tiles with coefficients up to 8 and rounds there: a few
  // fp32 ulp of the terms' scale more than direct, 1e-4 separating that from a wrong index.
  const ScopedConvAlgorithm winograd(cpu::ConvAlgorithm::automatic);
  CHECK(cpu::runs_winograd(2, 3, 1, 32, 48, 16, DType::f32));
  CHECK_FALSE(cpu::runs_winograd(2, 3, 1, 16, 32, 64, DType::f32));  // slower than direct at 16 channels
  CHECK_FALSE(cpu::runs_winograd(2, 3, 1, 64, 64, 8, DType::f32));   // on small images
  CHECK_FALSE(cpu::runs_winograd(3, 3, 1, 32, 32, 64, DType::f32));
  CHECK_FALSE(cpu::runs_winograd(2, 3, 2, 32, 32, 64, DType::f32));
  CHECK_FALSE(cpu::runs_winograd(2, 3, 1, 32, 32, 64, DType::bf16));
  // 32 -> 48 blocked (oneDNN's Winograd kernels), 40 -> 40 channels-last and 36 -> 36 padded (none
  // there on some CPUs: the direct fallback); odd extents leave partial tiles, at least
  // cpu::winograd_min_extent.
  for (const auto& [cin, cout] : {std::pair<int64_t, int64_t>{32, 48}, {40, 40}, {36, 36}}) {
    CAPTURE(cin);
    ParameterRegistry registry;
    Conv conv("winograd", config(2, cin, cout, 3, 1, 1), registry);
    registry.finalize(7, Device::cpu);
    check_layer(Device::cpu, conv, registry, Shape{1, cin, 16, 17}, cpu::channel_block_for(cin),
                cpu::channel_block_for(cout), cuda::ConvMath::fp32, 1e-4, 1e-4);
  }
}

TEST_CASE("conv on the CPU with cpu.conv_algorithm auto differs from direct by rounding only") {
  if (cpu::preferred_channel_block() < 16)
    return skip_reason("oneDNN's Winograd kernels need AVX-512, which this CPU lacks");
  const ConvConfig c = config(2, 32, 32, 3, 1, 1);
  const Shape in{2, 32, 16, 16};
  const Vec x = random_vec(static_cast<size_t>(in.numel()), 3);
  auto output = [&](cpu::ConvAlgorithm algorithm) {
    const ScopedConvAlgorithm scoped(algorithm);
    ParameterRegistry registry;
    Conv conv("conv", c, registry);
    registry.finalize(7, Device::cpu);  // the same weights for both
    return values_of(conv.forward(tensor_from(x, in, 16), Mode::eval));
  };
  const double difference =
      rel_max_error(output(cpu::ConvAlgorithm::automatic), output(cpu::ConvAlgorithm::direct));
  CHECK(difference > 0);  // Winograd ran: its sums round differently
  CHECK(difference < 1e-5);
}

TEST_CASE("conv output shape and flops follow floor((in + 2p - k)/s) + 1 and 2 N Cout S_out Cin k^ndim") {
  ParameterRegistry registry;
  Conv down("down", config(3, 8, 16, 3, 2, 1), registry);
  const Shape in{2, 8, 9, 8, 7};
  CHECK(down.output_shape(in) == Shape{2, 16, 5, 4, 4});
  check_symmetric_flops(down, in, 2.0 * 2 * 16 * (5 * 4 * 4) * 8 * 27);
  CHECK(down.kind() == "conv");
  CHECK_THROWS_AS(down.output_shape(Shape{2, 8, 9, 8}), Error);
}

TEST_CASE("conv initialises weight and bias uniform within +-1/sqrt(Cin k^ndim), as PyTorch") {
  ParameterRegistry registry;
  Conv conv("init", config(3, 4, 8, 3, 1, 1), registry);
  registry.finalize(11);
  check_uniform_init(conv, registry, 1 / std::sqrt(4.0 * 27), Shape{8, 4, 3, 3, 3}, 8);
  // Every backend starts from the same numbers: drawn on the host, copied to the device.
  for (Device device : test_devices()) {
    CAPTURE(device_name(device));
    ParameterRegistry on_device;
    Conv same("init", config(3, 4, 8, 3, 1, 1), on_device);
    on_device.finalize(11, device);
    CHECK(on_device.flat_values().device() == device);
    CHECK(host_values(on_device.flat_values()) == values_of(registry.flat_values()));
    CHECK(host_values(on_device.flat_grads()) ==
          Vec(static_cast<size_t>(registry.flat_grads().numel()), 0.0));
  }
}

TEST_CASE("conv rejects an input whose channel count or rank does not match its config") {
  ParameterRegistry registry;
  Conv conv("strict", config(2, 16, 16, 3, 1, 1), registry);
  registry.finalize(7);
  CHECK_THROWS_AS(conv.forward(Tensor::zeros(Shape{1, 8, 5, 5}), Mode::train), Error);
  // A device input with host parameters (or a binary without the device) is an error, not a copy.
  for (Device device : test_devices())
    if (device != Device::cpu)
      CHECK_THROWS_AS(conv.forward(Tensor::zeros(Shape{1, 16, 5, 5}, DType::f32, device), Mode::train),
                      Error);
  CHECK_THROWS_AS(conv.forward(Tensor::zeros(Shape{1, 16, 5, 5, 5}), Mode::train), Error);
  CHECK_THROWS_AS(conv.forward(Tensor::zeros(Shape{1, 16, 0, 5}), Mode::train), Error);
}

TEST_CASE("conv in fp16 and bf16 on the GPU and bf16 on the CPU matches fp32 within 16-bit rounding") {
  // The GPU takes fp16 and bf16, the CPU bf16 where it has the instructions; elsewhere skipped with
  // the message above. The last shape is wider than cpu::widest_bf16_image: on the CPU it runs widened
  // to fp32 (oneDNN 2.6.3's AMX backward kernels fail there), with the same contract.
  for_each_reduced_precision_backend([](Device device, HalfType type16) {
    check_weighted_layer_in_half<Conv>(device, config(2, 16, 16, 3, 1, 1), Shape{2, 16, 6, 5}, type16);
    check_weighted_layer_in_half<Conv>(device, config(3, 8, 8, 3, 1, 1), Shape{1, 8, 4, 3, 5}, type16);
    check_weighted_layer_in_half<Conv>(device, config(2, 16, 16, 3, 1, 1), Shape{1, 16, 3, 1100}, type16);
  });
}

TEST_CASE("conv refuses fp16 input on the CPU and a dy of another type than its input") {
  check_weighted_layer_refuses_fp16_on_cpu<Conv>(config(2, 16, 16, 3, 1, 1));
}

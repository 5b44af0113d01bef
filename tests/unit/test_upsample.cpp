// Nearest 2x up-sampling: forward against a naive fp64 index loop, backward against central
// differences of it, plain and blocked layouts, 2D and 3D, on every backend; fp16/bf16 storage on the
// GPU against the fp32 CPU layer.
#include "device_testing.hpp"
#include "mixed_precision_testing.hpp"
#include "nn/upsample.hpp"

using namespace pdegen;
using namespace pdegen::testing;

namespace {

// y[n, c, Z, Y, X] = x[n, c, Z/2, Y/2, X/2] over logical (plain) order, 2 or 3 spatial axes.
Vec reference(const Vec& x, const Shape& in) {
  const int nd = in.rank() - 2;
  const int64_t D = nd == 3 ? in[2] : 1, H = in[-2], W = in[-1];
  const int64_t Do = nd == 3 ? 2 * D : 1, Ho = 2 * H, Wo = 2 * W;
  const int64_t planes = in[0] * in[1];
  Vec y(static_cast<size_t>(planes * Do * Ho * Wo));
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t Z = 0; Z < Do; ++Z)
      for (int64_t Y = 0; Y < Ho; ++Y)
        for (int64_t X = 0; X < Wo; ++X) {
          const int64_t z = nd == 3 ? Z / 2 : 0;
          y[static_cast<size_t>(((p * Do + Z) * Ho + Y) * Wo + X)] =
              x[static_cast<size_t>(((p * D + z) * H + Y / 2) * W + X / 2)];
        }
  return y;
}

Shape doubled(Shape s) {
  for (int i = 2; i < s.rank(); ++i) s[i] *= 2;
  return s;
}

void check_upsample(const Shape& shape, int block, Device device) {
  CAPTURE(shape.str());
  CAPTURE(block);
  // fp32-representable inputs, so that the copy must match the reference exactly.
  Vec x = random_vec(static_cast<size_t>(shape.numel()), 1);
  for (double& v : x) v = static_cast<float>(v);
  Upsample layer(shape.rank() - 2);
  const Tensor y = layer.forward(tensor_on(device, x, shape, block), Mode::train);
  CHECK(y.device() == device);
  CHECK(y.shape() == doubled(shape));
  CHECK(y.channel_block() == block);
  // A copy: exact.
  CHECK(rel_max_error(host_values(y), reference(x, shape)) == 0.0);

  const Vec w = random_vec(static_cast<size_t>(y.numel()), 2);
  const Tensor dx = layer.backward(tensor_on(device, w, y.shape(), block));
  CHECK(dx.device() == device);
  CHECK(dx.shape() == shape);
  CHECK(dx.channel_block() == block);
  auto ref = [&](const Vec& v) { return reference(v, shape); };
  CHECK(rel_max_error(host_values(dx), fd_gradient(ref, x, w)) < f32_tol);
}

}  // namespace

TEST_CASE("upsample forward copies each value to its 2x2 children and backward sums them, 2D") {
  for_each_device([](Device device) {
    check_upsample(Shape{2, 3, 5, 3}, 1, device);
    check_upsample(Shape{2, 16, 5, 3}, 16, device);
    check_upsample(Shape{1, 32, 4, 6}, 16, device);
  });
}

TEST_CASE("upsample forward copies each value to its 2x2x2 children and backward sums them, 3D") {
  for_each_device([](Device device) {
    check_upsample(Shape{2, 3, 3, 4, 5}, 1, device);
    check_upsample(Shape{2, 16, 3, 2, 5}, 16, device);
  });
}

TEST_CASE("upsample takes dy in another layout and returns dx in the input's") {
  for_each_device([](Device device) {
    const Shape shape{2, 16, 3, 4};
    const Vec x = random_vec(static_cast<size_t>(shape.numel()), 3);
    Upsample layer(2);
    const Tensor y = layer.forward(tensor_on(device, x, shape, 16), Mode::train);
    const Vec w = random_vec(static_cast<size_t>(y.numel()), 4);
    const Tensor dx = layer.backward(tensor_on(device, w, y.shape(), 1));
    CHECK(dx.channel_block() == 16);
    auto ref = [&](const Vec& v) { return reference(v, shape); };
    CHECK(rel_max_error(host_values(dx), fd_gradient(ref, x, w)) < f32_tol);
  });
}

TEST_CASE("upsample reports its kind, shapes and one backward flop per output element") {
  Upsample layer(3);
  CHECK(layer.kind() == "upsample_nearest");
  CHECK(layer.output_shape(Shape{2, 4, 3, 5, 6}) == Shape{2, 4, 6, 10, 12});
  const Flops f = layer.flops(Shape{2, 4, 3, 5, 6});
  CHECK(f.forward == 0);
  CHECK(f.backward_data == 2.0 * 4 * 6 * 10 * 12);
  CHECK(f.backward_weights == 0);
}

TEST_CASE("upsample rejects a wrong rank, backward before forward and a mismatched dy") {
  CHECK_THROWS_AS(Upsample(1), Error);
  for_each_device([](Device device) {
    Upsample layer(2);
    CHECK_THROWS_AS(layer.backward(Tensor::zeros(Shape{1, 1, 4, 4}, DType::f32, device)), Error);
    CHECK_THROWS_AS(layer.forward(Tensor::zeros(Shape{1, 1, 2, 2, 2}, DType::f32, device), Mode::train),
                    Error);
    layer.forward(Tensor::zeros(Shape{1, 2, 3, 3}, DType::f32, device), Mode::train);
    CHECK_THROWS_AS(layer.backward(Tensor::zeros(Shape{1, 2, 6, 5}, DType::f32, device)), Error);
  });
}

TEST_CASE("upsample in fp16 and bf16 on the GPU and bf16 on the CPU matches fp32 within 16-bit rounding") {
  for_each_reduced_precision_backend([](Device device, const HalfType& type16) {
    for (const Shape& shape : {Shape{2, 16, 3, 4}, Shape{2, 16, 2, 3, 2}})
      for (int block : {1, 16}) {
        CAPTURE(shape.str());
        CAPTURE(block);
        const Vec x = random_vec(static_cast<size_t>(shape.numel()), 1);
        const Vec w = random_vec(static_cast<size_t>(doubled(shape).numel()), 2);
        Upsample cpu(shape.rank() - 2), gpu(shape.rank() - 2);
        const Vec y32 =
            values_of(cpu.forward(tensor_from(rounded_to(type16.dtype, x), shape, block), Mode::train));
        const Vec dx32 =
            values_of(cpu.backward(tensor_from(rounded_to(type16.dtype, w), doubled(shape), block)));

        const Tensor y = gpu.forward(tensor_as(device, type16.dtype, x, shape, block), Mode::train);
        CHECK(y.device() == device);
        CHECK(y.dtype() == type16.dtype);
        CHECK(y.channel_block() == block);
        CHECK(values_as_f32(y) == y32);  // copies of 16-bit values: exact
        const Tensor dx = gpu.backward(tensor_as(device, type16.dtype, w, doubled(shape), block));
        CHECK(dx.device() == device);
        CHECK(dx.dtype() == type16.dtype);
        CHECK(dx.channel_block() == block);
        // The sum of 2^d children in fp32, rounded once.
        CHECK(rel_max_error(values_as_f32(dx), dx32) < 2 * type16.u);
      }
  });
}

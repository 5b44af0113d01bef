// Concat along channels: exact values against y[n, c] = c < Ca ? a[n, c] : b[n, c - Ca], the output
// layout rule, and a backward that hands back exactly the matching slices of dy in each input's
// layout, on every backend; fp16/bf16 storage on the GPU against the fp32 CPU concat.
#include "backend/cpu/dnnl_context.hpp"
#include "device_testing.hpp"
#include "mixed_precision_testing.hpp"
#include "nn/concat.hpp"

using namespace pdegen;
using namespace pdegen::testing;

namespace {

struct Case {
  Shape a, b;
  int a_block, b_block;
};

Vec reference(const Vec& a, const Shape& as, const Vec& b, const Shape& bs) {
  const int64_t N = as[0], Ca = as[1], Cb = bs[1], S = as.spatial();
  Vec y;
  for (int64_t n = 0; n < N; ++n) {
    y.insert(y.end(), a.begin() + n * Ca * S, a.begin() + (n + 1) * Ca * S);
    y.insert(y.end(), b.begin() + n * Cb * S, b.begin() + (n + 1) * Cb * S);
  }
  return y;
}

// The layout rule, restated: on the CPU the preferred block when it divides both parts, plain
// otherwise; on the GPU always plain.
int expected_block(const Shape& a, const Shape& b, Device device) {
  if (device == Device::cuda) return 1;
  const int p = cpu::preferred_channel_block();
  return a[1] % p == 0 && b[1] % p == 0 ? p : 1;
}

// Forward values exact, the output layout as promised; backward slices exact, in the input layouts.
void check_on(const Case& cs, Device device) {
  CAPTURE(device_name(device));
  CAPTURE(cs.a.str());
  CAPTURE(cs.b.str());
  CAPTURE(cs.a_block);
  CAPTURE(cs.b_block);
  const Vec a = random_vec(static_cast<size_t>(cs.a.numel()), 1);
  const Vec b = random_vec(static_cast<size_t>(cs.b.numel()), 2);
  Concat concat;
  const Tensor y =
      concat.forward(tensor_on(device, a, cs.a, cs.a_block), tensor_on(device, b, cs.b, cs.b_block));
  Shape out = cs.a;
  out[1] += cs.b[1];
  CHECK(y.device() == device);
  CHECK(y.shape() == out);
  CHECK(concat.output_shape(cs.a, cs.b) == out);
  CHECK(y.channel_block() == expected_block(cs.a, cs.b, device));
  CHECK(concat.output_block(cs.a, cs.b, device) == y.channel_block());
  // Both sides are fp32 copies of the same doubles: equality, not tolerance.
  Vec want = reference(a, cs.a, b, cs.b);
  for (auto& v : want) v = static_cast<float>(v);
  CHECK(host_values(y) == want);

  const Vec dy = random_vec(static_cast<size_t>(out.numel()), 3);
  const auto [da, db] = concat.backward(tensor_on(device, dy, out, y.channel_block()));
  CHECK(da.device() == device);
  CHECK(da.shape() == cs.a);
  CHECK(db.shape() == cs.b);
  CHECK(da.channel_block() == cs.a_block);
  CHECK(db.channel_block() == cs.b_block);
  CHECK(reference(host_values(da), cs.a, host_values(db), cs.b) == values_of(tensor_from(dy, out)));
}

void check(const Case& cs) {
  for (Device device : test_devices()) check_on(cs, device);
}

}  // namespace

TEST_CASE("blocked + blocked (16 + 16) concatenates in the blocked layout, backward exact") {
  check({Shape{2, 16, 5, 3}, Shape{2, 16, 5, 3}, 16, 16});
  check({Shape{3, 32, 4, 4}, Shape{3, 16, 4, 4}, 16, 16});
}

TEST_CASE("plain + blocked (1 + 16) gives a plain output and db back in the blocked layout") {
  check({Shape{2, 1, 5, 3}, Shape{2, 16, 5, 3}, 1, 16});
  check({Shape{2, 16, 5, 3}, Shape{2, 1, 5, 3}, 16, 1});
}

TEST_CASE("an input in another layout is re-blocked first: plain 16 + blocked 16 is blocked") {
  check({Shape{2, 16, 5, 3}, Shape{2, 16, 5, 3}, 1, 16});
  check({Shape{2, 16, 5, 3}, Shape{2, 16, 5, 3}, 1, 1});
}

TEST_CASE("a block that divides the total but not each part (8 + 8) gives plain output") {
  check({Shape{2, 8, 5, 3}, Shape{2, 8, 5, 3}, 1, 1});
}

TEST_CASE("3D fields concatenate the same way, blocked and plain") {
  check({Shape{2, 16, 3, 4, 5}, Shape{2, 16, 3, 4, 5}, 16, 16});
  check({Shape{2, 1, 3, 4, 5}, Shape{2, 16, 3, 4, 5}, 1, 16});
}

TEST_CASE("concat of large samples copies every chunk") {
  // 2 x 64 x 64 x 64 floats per input: each sample is several of the copy's 256 KiB work items.
  check({Shape{2, 64, 64, 64}, Shape{2, 32, 64, 64}, 16, 16});
}

TEST_CASE("concat rejects different N or spatial extents") {
  for_each_device([](Device device) {
    const auto zeros = [device](const Shape& s) { return Tensor::zeros(s, DType::f32, device); };
    Concat concat;
    CHECK_THROWS_AS(concat.forward(zeros(Shape{2, 16, 4, 4}), zeros(Shape{1, 16, 4, 4})), Error);
    CHECK_THROWS_AS(concat.forward(zeros(Shape{2, 16, 4, 4}), zeros(Shape{2, 16, 4, 5})), Error);
    CHECK_THROWS_AS(concat.backward(zeros(Shape{2, 32, 4, 4})), Error);
  });
}

TEST_CASE("concat in fp16 and bf16 on the GPU and bf16 on the CPU matches fp32 within 16-bit rounding") {
  for_each_reduced_precision_backend([](Device device, const HalfType& type16) {
    for (const Case& cs : {Case{Shape{2, 16, 3, 4}, Shape{2, 16, 3, 4}, 16, 16},
                           Case{Shape{2, 3, 3, 4}, Shape{2, 16, 3, 4}, 1, 16},
                           Case{Shape{2, 16, 2, 3, 2}, Shape{2, 5, 2, 3, 2}, 16, 1}}) {
      CAPTURE(cs.a.str());
      CAPTURE(cs.b.str());
      CAPTURE(cs.a_block);
      CAPTURE(cs.b_block);
      const Vec a = random_vec(static_cast<size_t>(cs.a.numel()), 1);
      const Vec b = random_vec(static_cast<size_t>(cs.b.numel()), 2);
      Shape out = cs.a;
      out[1] += cs.b[1];
      const Vec dy = random_vec(static_cast<size_t>(out.numel()), 3);
      Concat cpu, gpu;
      const Tensor y_cpu = cpu.forward(tensor_from(rounded_to(type16.dtype, a), cs.a, cs.a_block),
                                       tensor_from(rounded_to(type16.dtype, b), cs.b, cs.b_block));
      const auto [da_cpu, db_cpu] =
          cpu.backward(tensor_from(rounded_to(type16.dtype, dy), out, y_cpu.channel_block()));

      // Copies of values that are already 16-bit: the rounding happened in the inputs, so exact.
      const Tensor y = gpu.forward(tensor_as(device, type16.dtype, a, cs.a, cs.a_block),
                                   tensor_as(device, type16.dtype, b, cs.b, cs.b_block));
      CHECK(y.device() == device);
      CHECK(y.dtype() == type16.dtype);
      // Plain on the GPU, channels-last in bf16 on the CPU.
      CHECK(y.channel_block() == gpu.output_block(cs.a, cs.b, device, type16.dtype));
      CHECK(y.channel_block() == (device == Device::cpu ? out[1] : 1));
      CHECK(values_as_f32(y) == values_of(y_cpu));
      const auto [da, db] = gpu.backward(tensor_as(device, type16.dtype, dy, out, 1));
      CHECK(da.dtype() == type16.dtype);
      CHECK(db.dtype() == type16.dtype);
      CHECK(da.channel_block() == cs.a_block);
      CHECK(db.channel_block() == cs.b_block);
      CHECK(values_as_f32(da) == values_of(da_cpu));
      CHECK(values_as_f32(db) == values_of(db_cpu));
    }
  });
}

// Tensor basics: shapes, views, blocked layout round trips, type conversion, the caching allocator.
#include <cmath>
#include <cstdint>

#include "core/allocator.hpp"
#include "core/tensor.hpp"
#include "testing.hpp"

using namespace pdegen;
using namespace pdegen::testing;

TEST_CASE("shape counts elements and spatial size, strides are row-major") {
  Tensor t = Tensor::zeros(Shape{2, 3, 4, 5});
  CHECK(t.numel() == 120);
  CHECK(t.shape().spatial() == 20);
  CHECK(t.nbytes() == 480);
  CHECK(t.strides() == Shape{60, 20, 5, 1});
  CHECK(t.shape().str() == "[2, 3, 4, 5]");
  CHECK_THROWS_AS(t.data<double>(), Error);
}

TEST_CASE("blocked layout places (n, c, s) at ((n*C/b + c/b)*S + s)*b + c%b and round-trips") {
  const Shape shape{2, 32, 3, 5, 2};
  Vec v = random_vec(static_cast<size_t>(shape.numel()), 3);
  Tensor plain = tensor_from(v, shape);
  for (int b : {8, 16}) {
    Tensor blocked = to_channel_block(plain, b);
    CHECK(blocked.channel_block() == b);
    const float* p = blocked.data<float>();
    // element n=1, c=19, s=7 checked by hand
    const int64_t S = 30, n = 1, c = 19, s = 7;
    CHECK(p[((n * (32 / b) + c / b) * S + s) * b + c % b] ==
          static_cast<float>(v[static_cast<size_t>((n * 32 + c) * S + s)]));
    CHECK(values_of(blocked) == values_of(plain));
  }
  CHECK_THROWS_AS(Tensor::empty(Shape{1, 12, 4, 4}, DType::f32, Device::cpu, 16),
                  Error);  // 16 does not divide 12
}

TEST_CASE("batch slices are views that share memory") {
  Tensor t = Tensor::zeros(Shape{4, 16, 2, 2}, DType::f32, Device::cpu, 16);
  Tensor s = t.slice_batch(1, 3);
  CHECK(s.dim(0) == 2);
  s.fill(2.0);
  const float* p = t.data<float>();
  CHECK(p[0] == 0.0f);
  CHECK(p[64] == 2.0f);
  CHECK(p[3 * 64 - 1] == 2.0f);
  CHECK(p[3 * 64] == 0.0f);
}

TEST_CASE("fp16 and bf16 storage round to nearest even and keep special values") {
  CHECK(from_f16(to_f16(1.0f)) == 1.0f);
  CHECK(from_f16(to_f16(65504.0f)) == 65504.0f);
  CHECK(std::isinf(from_f16(to_f16(65520.0f))));
  CHECK(from_f16(to_f16(5.9604644775390625e-8f)) == 5.9604644775390625e-8f);  // smallest subnormal
  CHECK(from_f16(to_f16(1.0f + 1.0f / 2048)) == 1.0f);                        // tie to even
  CHECK(from_f16(to_f16(1.0f + 3.0f / 2048)) == 1.0f + 2.0f / 1024);          // tie to even, up
  CHECK(std::isnan(from_f16(to_f16(NAN))));
  CHECK(to_f16(-2.0f).bits == 0xc000);
  CHECK(from_bf16(to_bf16(1.0f)) == 1.0f);
  CHECK(to_bf16(1.0f + 1.0f / 256).bits == to_bf16(1.0f).bits);  // tie to even
  CHECK(std::isnan(from_bf16(to_bf16(NAN))));
  Tensor t = tensor_from({0.5, -1.25, 3.0, 1e-3}, Shape{4});
  Tensor h = to_dtype(t, DType::f16);
  Tensor back = to_dtype(h, DType::f32);
  CHECK(rel_max_error(values_of(back), {0.5, -1.25, 3.0, 1e-3}) < 1e-3);
}

namespace {
// How many 16-bit patterns of T do not survive to_float then from_float<T> (NaNs must stay NaN,
// every other value must come back with the same bits: +-0, subnormals, normals, +-inf).
template <class T>
int round_trip_failures() {
  int failures = 0;
  for (uint32_t bits = 0; bits <= 0xffffu; ++bits) {
    const T v{static_cast<uint16_t>(bits)};
    const float f = to_float(v);
    const T back = from_float<T>(f);
    if (std::isnan(f) ? !std::isnan(to_float(back)) : back.bits != v.bits) ++failures;
  }
  return failures;
}
}  // namespace

TEST_CASE("to_float and from_float round-trip every fp16 and bf16 value, round ties to even, keep NaN") {
  CHECK(round_trip_failures<half_t>() == 0);
  CHECK(round_trip_failures<bfloat16_t>() == 0);
  // fp32 is its own storage type: identity, bits included.
  for (float f : {0.0f, -0.0f, 1.5f, 1e-40f, -3.4e38f, INFINITY}) {
    CHECK(float_bits(from_float<float>(f)) == float_bits(f));
    CHECK(float_bits(to_float(f)) == float_bits(f));
  }
  CHECK(std::isnan(from_float<float>(NAN)));

  // Ties to even: fp16 (ulp 2^-10 at 1), its subnormals (ulp 2^-24), bf16 (ulp 2^-7 at 1); just
  // above a tie rounds up.
  CHECK(from_float<half_t>(1.0f + 0x1p-11f).bits == 0x3c00);
  CHECK(from_float<half_t>(1.0f + 3 * 0x1p-11f).bits == 0x3c02);
  CHECK(from_float<half_t>(1.0f + 0x1p-11f + 0x1p-20f).bits == 0x3c01);
  CHECK(from_float<half_t>(0x1p-25f).bits == 0x0000);
  CHECK(from_float<half_t>(3 * 0x1p-25f).bits == 0x0002);
  CHECK(from_float<half_t>(-3 * 0x1p-25f).bits == 0x8002);
  CHECK(from_float<bfloat16_t>(1.0f + 0x1p-8f).bits == 0x3f80);
  CHECK(from_float<bfloat16_t>(1.0f + 3 * 0x1p-8f).bits == 0x3f82);
  CHECK(from_float<bfloat16_t>(1.0f + 0x1p-8f + 0x1p-16f).bits == 0x3f81);

  // fp16 overflows to infinity from the midpoint above its largest value (65504) on.
  CHECK(from_float<half_t>(65504.0f).bits == 0x7bff);
  CHECK(from_float<half_t>(65519.0f).bits == 0x7bff);
  CHECK(from_float<half_t>(65520.0f).bits == 0x7c00);
  CHECK(from_float<half_t>(-1e10f).bits == 0xfc00);
  CHECK(from_float<half_t>(INFINITY).bits == 0x7c00);
  CHECK(std::isinf(to_float(half_t{0x7c00})));
  // bf16 has fp32's range: FLT_MAX rounds up to infinity, infinity stays.
  CHECK(from_float<bfloat16_t>(3.4028235e38f).bits == 0x7f80);
  CHECK(from_float<bfloat16_t>(-INFINITY).bits == 0xff80);

  // NaN stays NaN in both directions, whatever its sign.
  CHECK(std::isnan(to_float(from_float<half_t>(NAN))));
  CHECK(std::isnan(to_float(from_float<half_t>(-NAN))));
  CHECK(std::isnan(to_float(from_float<bfloat16_t>(NAN))));
  CHECK(std::isnan(to_float(from_float<bfloat16_t>(-NAN))));
  CHECK(std::isnan(to_float(half_t{0x7e00})));
  CHECK(std::isnan(to_float(bfloat16_t{0x7fc0})));
}

TEST_CASE("caching allocator reuses released blocks and tracks the peak") {
  CachingAllocator alloc;
  void* a = alloc.allocate(3 << 20);
  CHECK(reinterpret_cast<uintptr_t>(a) % CachingAllocator::alignment == 0);
  CHECK(alloc.stats().in_use == CachingAllocator::round_size(3 << 20));
  alloc.release(a, 3 << 20);
  void* b = alloc.allocate(3 << 20);
  CHECK(b == a);
  CHECK(alloc.stats().cache_hits == 1);
  const size_t peak = alloc.stats().peak_in_use;
  alloc.release(b, 3 << 20);
  CHECK(alloc.stats().in_use == 0);
  CHECK(alloc.stats().peak_in_use == peak);
  alloc.empty_cache();
  CHECK(alloc.stats().cached == 0);
}

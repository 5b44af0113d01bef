// Tensor basics: shapes, views, blocked layout round trips, type conversion, the caching allocator.
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

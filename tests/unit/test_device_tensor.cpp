// Tensors on every device of test_devices(): moves between host and device keep values and layout,
// fill/zeros/clone/copy_from work where the data lives, the device allocator reuses blocks and
// counts its peak, to_dtype converts on the device as on the host, and a binary without CUDA refuses
// Device::cuda instead of falling back.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "backends.hpp"
#include "testing.hpp"

#ifdef PDEGEN_HAVE_CUDA
#include "backend/cuda/cuda_context.hpp"
#include "core/device_allocator.hpp"
#endif

using namespace pdegen;
using namespace pdegen::testing;

namespace {

// The raw bytes of a host tensor.
std::vector<unsigned char> bytes_of(const Tensor& host) {
  const auto* p = static_cast<const unsigned char*>(host.raw());
  return std::vector<unsigned char>(p, p + host.nbytes());
}

}  // namespace

TEST_CASE("a tensor moved to a device and back keeps its bytes, shape, dtype and layout") {
  const Shape shape{2, 16, 3, 5};
  for (Device device : test_devices())
    for (DType dtype : {DType::f32, DType::f64, DType::f16, DType::bf16})
      for (int block : {1, 16}) {
        CAPTURE(device_name(device));
        CAPTURE(dtype_name(dtype));
        CAPTURE(block);
        const Tensor host = to_channel_block(to_dtype(tensor_from(random_vec(480, 1), shape), dtype), block);
        const Tensor there = host.to(device);
        CHECK(there.device() == device);
        CHECK(there.shape() == shape);
        CHECK(there.dtype() == dtype);
        CHECK(there.channel_block() == block);
        const Tensor back = there.to(Device::cpu);
        CHECK(back.device() == Device::cpu);
        CHECK(bytes_of(back) == bytes_of(host));
      }
}

TEST_CASE("to() on the device a tensor already lives on returns that tensor, not a copy") {
  for (Device device : test_devices()) {
    CAPTURE(device_name(device));
    const Tensor t = Tensor::zeros(Shape{4, 3}, DType::f32, device);
    CHECK(t.to(device).raw() == t.raw());
  }
}

TEST_CASE("fill and zeros set every element on the device, in every element type") {
  for (Device device : test_devices())
    for (DType dtype : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
      CAPTURE(device_name(device));
      CAPTURE(dtype_name(dtype));
      // 1000 elements: not a multiple of a thread block, so the tail is covered too.
      Tensor t = Tensor::zeros(Shape{1000}, dtype, device);
      CHECK(values_of(to_dtype(t.to(Device::cpu), DType::f32)) == Vec(1000, 0.0));
      t.fill(-2.5);
      CHECK(values_of(to_dtype(t.to(Device::cpu), DType::f32)) == Vec(1000, -2.5));
    }
}

TEST_CASE("clone and copy_from copy on the device and between host and device") {
  const Shape shape{3, 7, 11};
  const Vec v = random_vec(231, 2);
  for (Device device : test_devices()) {
    CAPTURE(device_name(device));
    const Tensor a = tensor_from(v, shape).to(device);
    const Tensor b = a.clone();
    CHECK(b.device() == device);
    CHECK(b.raw() != a.raw());
    CHECK(host_values(b) == host_values(a));
    Tensor c = Tensor::zeros(shape, DType::f32, device);
    c.copy_from(tensor_from(v, shape));  // host -> device
    CHECK(host_values(c) == values_of(tensor_from(v, shape)));
    Tensor d = Tensor::zeros(shape, DType::f32, Device::cpu);
    d.copy_from(c);  // device -> host
    CHECK(values_of(d) == values_of(tensor_from(v, shape)));
    CHECK_THROWS_AS(c.copy_from(Tensor::zeros(Shape{3, 7, 10}, DType::f32, device)), Error);
  }
}

namespace {

// 1280 values through every rounding path of the conversions: fp16 and bf16 ties (to even, down and
// up), fp16 subnormals and their ties, fp16 overflow, values only fp32 or fp64 hold, signed zeros,
// infinities, NaN, and random values from 1e-9 to 1e6 of both signs.
Vec conversion_values() {
  Vec v = {0.0,
           -0.0,
           1.0 + 0x1p-11,
           1.0 + 3 * 0x1p-11,
           1.0 + 0x1p-8,
           1.0 + 3 * 0x1p-8,
           0x1p-25,
           3 * 0x1p-25,
           -5e-8,
           65504.0,
           65519.0,
           65520.0,
           -1e10,
           3.4028235e38,
           1e300,
           1e-300,
           1.0 + 0x1p-40,  // rounds in fp64 -> fp32
           std::numeric_limits<double>::infinity(),
           -std::numeric_limits<double>::infinity(),
           std::numeric_limits<double>::quiet_NaN()};
  const Vec mantissa = random_vec(1280, 40), exponent = random_vec(1280, 41, -9, 6);
  for (size_t i = v.size(); i < 1280; ++i) v.push_back(mantissa[i] * std::pow(10.0, exponent[i]));
  return v;
}

// Element-wise identity of two host tensors of one dtype: the same bits after the exact widening to
// fp64 (signed zeros told apart), or NaN in both (NaN payloads may differ between host and device).
bool same_elements(const Tensor& a, const Tensor& b) {
  const Tensor wa = to_plain(to_dtype(a, DType::f64)), wb = to_plain(to_dtype(b, DType::f64));
  if (wa.numel() != wb.numel()) return false;
  const double *pa = wa.data<double>(), *pb = wb.data<double>();
  for (int64_t i = 0; i < wa.numel(); ++i)
    if (!(std::isnan(pa[i]) && std::isnan(pb[i])) && std::memcmp(pa + i, pb + i, sizeof(double)) != 0)
      return false;
  return true;
}

}  // namespace

TEST_CASE("to_dtype on the GPU converts between fp64, fp32, fp16 and bf16 as the host does, layout kept") {
  const Vec values = conversion_values();
  const Shape shape{2, 16, 40};
  Tensor f64 = Tensor::empty(shape, DType::f64);
  std::copy(values.begin(), values.end(), f64.data<double>());
  bool ran = false;
  for (Device device : test_devices()) {
    if (device == Device::cpu) continue;
    ran = true;
    for (DType from : {DType::f64, DType::f32, DType::f16, DType::bf16})
      for (DType to : {DType::f64, DType::f32, DType::f16, DType::bf16})
        for (int block : {1, 16}) {
          if (from == to) continue;
          CAPTURE(device_name(device));
          CAPTURE(dtype_name(from));
          CAPTURE(dtype_name(to));
          CAPTURE(block);
          const Tensor source = to_channel_block(to_dtype(f64, from), block);
          const Tensor want = to_dtype(source, to);
          const Tensor got = to_dtype(source.to(device), to);
          CHECK(got.device() == device);
          CHECK(got.dtype() == to);
          CHECK(got.channel_block() == block);
          CHECK(got.shape() == shape);
          CHECK(same_elements(got.to(Device::cpu), want));
        }
  }
  if (!ran) skip_reason("to_dtype on the GPU: no cuda device under test");
}

TEST_CASE("a binary without CUDA refuses Device::cuda with a clear error instead of using the host") {
  std::string reason;
  if (cuda::available(&reason) || reason.find("built without CUDA") == std::string::npos) return;
  try {
    (void)Tensor::empty(Shape{4}, DType::f32, Device::cuda);
    FAIL("Tensor::empty on cuda succeeded in a binary without CUDA");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("built without the CUDA backend") != std::string::npos);
  }
  CHECK_THROWS_AS(Tensor::zeros(Shape{4}).to(Device::cuda), Error);
  CHECK_THROWS_AS(cuda::select_device(0), Error);
  CHECK(cuda::compiled_versions() == "not built in this binary");
}

#ifdef PDEGEN_HAVE_CUDA
TEST_CASE("the device allocator hands released blocks out again and counts its peak") {
  for (Device device : test_devices()) {
    if (device != Device::cuda) continue;
    auto& allocator = cuda::DeviceAllocator::instance();
    allocator.reset_peak();
    const AllocatorStats before = allocator.stats();
    void* first = nullptr;
    {
      const Tensor t = Tensor::empty(Shape{3 << 20}, DType::f32, Device::cuda);  // 12 MiB
      first = t.raw();
      CHECK(allocator.stats().in_use >= before.in_use + (size_t{12} << 20));
    }
    const Tensor again = Tensor::empty(Shape{3 << 20}, DType::f32, Device::cuda);
    CHECK(again.raw() == first);
    const AllocatorStats after = allocator.stats();
    CHECK(after.cache_hits > before.cache_hits);
    CHECK(after.peak_in_use >= before.in_use + (size_t{12} << 20));
    CHECK(!cuda::describe_device().empty());
  }
}
#endif

// Tensors on every device of test_devices(): moves between host and device keep values and layout,
// fill/zeros/clone/copy_from work where the data lives, the device allocator reuses blocks and
// counts its peak, and a binary without CUDA refuses Device::cuda instead of falling back.
#include <cstring>
#include <string>
#include <vector>

#include "backends.hpp"
#include "testing.hpp"

#ifdef PDEGEN_HAVE_CUDA
#include "backend/cuda/cuda_context.hpp"
#include "backend/cuda/device_allocator.hpp"
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

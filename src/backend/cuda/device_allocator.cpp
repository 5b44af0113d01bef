// Caching device allocator and host/device copies (see device_allocator.hpp). Compiled only into a
// CUDA build; a CPU-only build refuses Device::cuda in core/tensor.cpp instead.
#ifdef PDEGEN_HAVE_CUDA

#include "core/device_allocator.hpp"

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_context.hpp"

namespace pdegen::cuda {

namespace {
constexpr size_t mib = size_t{1} << 20;
size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }
}  // namespace

DeviceAllocator& DeviceAllocator::instance() {
  // Leaked on purpose: tensors held in statics may be released after main() returns, when the
  // CUDA runtime is already torn down; the driver reclaims the memory at exit.
  static auto* allocator = new DeviceAllocator();
  return *allocator;
}

size_t DeviceAllocator::round_size(size_t bytes) {
  return bytes < mib ? round_up(bytes, 512) : round_up(bytes, 2 * mib);
}

void* DeviceAllocator::allocate(size_t bytes) {
  if (bytes == 0) return nullptr;
  const size_t size = round_size(bytes);
  if (void* p = cache_.take(size)) return p;
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, size);
  if (e == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();  // clear the error before retrying
    empty_cache();
    e = cudaMalloc(&p, size);
  }
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    const AllocatorStats s = stats();
    const std::string what = fmt::format(
        "cudaMalloc of {:.1f} MiB failed: {} ({:.1f} MiB in use by pdegen, peak {:.1f} MiB)",
        double(size) / mib, cudaGetErrorString(e), double(s.in_use) / mib, double(s.peak_in_use) / mib);
    if (e == cudaErrorMemoryAllocation) throw OutOfMemory(what);
    PDEGEN_THROW("{}", what);
  }
  cache_.add_in_use(size);
  return p;
}

void DeviceAllocator::release(void* p, size_t bytes) {
  if (p != nullptr) cache_.give(p, round_size(bytes));
}

void DeviceAllocator::empty_cache() {
  // Work queued before the blocks were released may still read them.
  if (cache_.stats().cached > 0) CUDA_CHECK(cudaStreamSynchronize(stream()));
  cache_.drain([](void* p) { CUDA_CHECK(cudaFree(p)); });
}

AllocatorStats DeviceAllocator::stats() const { return cache_.stats(); }

void DeviceAllocator::reset_peak() { cache_.reset_peak(); }

void copy_bytes(void* dst, bool dst_on_device, const void* src, bool src_on_device, size_t bytes) {
  if (bytes == 0) return;
  const cudaMemcpyKind kind = dst_on_device
                                  ? (src_on_device ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                                  : (src_on_device ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
  // From pageable host memory the call returns once the source is staged, so the caller may reuse
  // it at once; into host memory we must wait for the data.
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, stream()));
  if (!dst_on_device) CUDA_CHECK(cudaStreamSynchronize(stream()));
}

}  // namespace pdegen::cuda

#endif  // PDEGEN_HAVE_CUDA

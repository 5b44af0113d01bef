// Caching device allocator and host/device copies (see device_allocator.hpp). Compiled only into a
// CUDA build; a CPU-only build refuses Device::cuda in core/tensor.cpp instead.
#ifdef PDEGEN_HAVE_CUDA

#include "backend/cuda/device_allocator.hpp"

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
  std::lock_guard lock(mutex_);
  ++stats_.allocations;
  auto it = free_.find(size);
  void* p = nullptr;
  if (it != free_.end()) {
    p = it->second;
    free_.erase(it);
    stats_.cached -= size;
    ++stats_.cache_hits;
  } else {
    cudaError_t e = cudaMalloc(&p, size);
    if (e == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();  // clear the sticky-free error before retrying
      free_cached_locked();
      e = cudaMalloc(&p, size);
    }
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      PDEGEN_THROW("cudaMalloc of {:.1f} MiB failed: {} ({:.1f} MiB in use by pdegen, peak {:.1f} MiB)",
                   double(size) / mib, cudaGetErrorString(e), double(stats_.in_use) / mib,
                   double(stats_.peak_in_use) / mib);
    }
  }
  stats_.in_use += size;
  if (stats_.in_use > stats_.peak_in_use) stats_.peak_in_use = stats_.in_use;
  return p;
}

void DeviceAllocator::release(void* p, size_t bytes) {
  if (p == nullptr) return;
  const size_t size = round_size(bytes);
  std::lock_guard lock(mutex_);
  stats_.in_use -= size;
  stats_.cached += size;
  free_.emplace(size, p);
}

void DeviceAllocator::free_cached_locked() {
  if (free_.empty()) return;
  // Work queued before the blocks were released may still read them.
  CUDA_CHECK(cudaStreamSynchronize(stream()));
  for (auto& [size, p] : free_) CUDA_CHECK(cudaFree(p));
  free_.clear();
  stats_.cached = 0;
}

void DeviceAllocator::empty_cache() {
  std::lock_guard lock(mutex_);
  free_cached_locked();
}

AllocatorStats DeviceAllocator::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

void DeviceAllocator::reset_peak() {
  std::lock_guard lock(mutex_);
  stats_.peak_in_use = stats_.in_use;
}

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

// Caching host allocator (see allocator.hpp).
#include "core/allocator.hpp"

#include <sys/mman.h>

#include <cstdlib>
#include <new>

#include "core/error.hpp"

namespace pdegen {

namespace {
constexpr size_t kib = 1024, mib = 1024 * 1024;
size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }
}  // namespace

CachingAllocator& CachingAllocator::host() {
  // Leaked on purpose: tensors held in statics may be released after main() returns.
  static auto* instance = new CachingAllocator();
  return *instance;
}

size_t CachingAllocator::round_size(size_t bytes) {
  if (bytes < 4 * kib) return round_up(bytes, alignment);
  if (bytes < 2 * mib) return round_up(bytes, 4 * kib);
  return round_up(bytes, 2 * mib);
}

void* BlockCache::take(size_t size) {
  std::lock_guard lock(mutex_);
  ++stats_.allocations;
  auto it = free_.find(size);
  if (it == free_.end()) return nullptr;
  void* p = it->second;
  free_.erase(it);
  stats_.cached -= size;
  stats_.in_use += size;
  ++stats_.cache_hits;
  if (stats_.in_use > stats_.peak_in_use) stats_.peak_in_use = stats_.in_use;
  return p;
}

void BlockCache::add_in_use(size_t size) {
  std::lock_guard lock(mutex_);
  stats_.in_use += size;
  if (stats_.in_use > stats_.peak_in_use) stats_.peak_in_use = stats_.in_use;
}

void BlockCache::give(void* p, size_t size) {
  std::lock_guard lock(mutex_);
  stats_.in_use -= size;
  stats_.cached += size;
  free_.emplace(size, p);
}

AllocatorStats BlockCache::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

void BlockCache::reset_peak() {
  std::lock_guard lock(mutex_);
  stats_.peak_in_use = stats_.in_use;
}

void* CachingAllocator::allocate(size_t bytes) {
  if (bytes == 0) return nullptr;
  // Exact match on the rounded size: release() knows only the requested size, and the rounding
  // classes already make repeated shapes hit.
  const size_t size = round_size(bytes);
  if (void* p = cache_.take(size)) return p;
  const size_t align = size >= 2 * mib ? 2 * mib : (size >= 4 * kib ? 4 * kib : alignment);
  void* p = std::aligned_alloc(align, size);
  if (p == nullptr) {
    empty_cache();  // give cached memory back and try once more before failing
    p = std::aligned_alloc(align, size);
  }
  if (p == nullptr)
    throw OutOfMemory(fmt::format("out of host memory allocating {:.1f} MiB ({:.1f} MiB in use)",
                                  double(size) / mib, double(stats().in_use) / mib));
#ifdef MADV_HUGEPAGE
  if (size >= 2 * mib) madvise(p, size, MADV_HUGEPAGE);  // fewer TLB misses on large activations
#endif
  cache_.add_in_use(size);
  return p;
}

void CachingAllocator::release(void* p, size_t bytes) {
  if (p != nullptr) cache_.give(p, round_size(bytes));
}

void CachingAllocator::empty_cache() {
  cache_.drain([](void* p) { std::free(p); });
}

AllocatorStats CachingAllocator::stats() const { return cache_.stats(); }

void CachingAllocator::reset_peak() { cache_.reset_peak(); }

CachingAllocator::~CachingAllocator() { empty_cache(); }

}  // namespace pdegen

// Caching host allocator: aligned blocks kept on free lists by size and handed out again, so the
// training loop does not pay mmap/page-fault costs for its large activations every step. It also
// keeps the byte counts behind the memory figures that benchmarks and `pdegen check` report.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>

namespace pdegen {

struct AllocatorStats {
  size_t in_use = 0;       // bytes handed out and not yet returned
  size_t peak_in_use = 0;  // high-water mark of in_use since the last reset_peak()
  size_t cached = 0;       // bytes held on free lists
  uint64_t allocations = 0;
  uint64_t cache_hits = 0;
};

// The free lists and byte counts both caching allocators (host here, device in backend/cuda) keep:
// blocks keyed by their rounded size, reused on an exact match. Thread-safe; the allocators own the
// memory calls around it.
class BlockCache {
 public:
  // A cached block of exactly `size` bytes (now in use), or nullptr; counts the allocation.
  void* take(size_t size);
  // Counts a block of `size` bytes just obtained from the system as in use.
  void add_in_use(size_t size);
  // Returns a block that was in use to the cache.
  void give(void* p, size_t size);
  // Hands every cached block to `free_block(p)` and forgets them.
  template <class Free>
  void drain(Free&& free_block) {
    std::lock_guard lock(mutex_);
    for (auto& [size, p] : free_) free_block(p);
    free_.clear();
    stats_.cached = 0;
  }
  AllocatorStats stats() const;
  void reset_peak();

 private:
  mutable std::mutex mutex_;
  std::multimap<size_t, void*> free_;  // rounded size -> block
  AllocatorStats stats_;
};

class CachingAllocator {
 public:
  static constexpr size_t alignment = 64;  // one cache line, one AVX-512 register

  static CachingAllocator& host();

  // Returns at least `bytes` bytes aligned to `alignment`; bytes == 0 gives nullptr.
  void* allocate(size_t bytes);
  // `bytes` must be the value passed to allocate().
  void release(void* p, size_t bytes);
  void empty_cache();
  AllocatorStats stats() const;
  void reset_peak();

  // Rounding classes: small blocks to 64 B, mid to 4 KiB pages, large to 2 MiB huge pages.
  static size_t round_size(size_t bytes);

  CachingAllocator() = default;
  ~CachingAllocator();
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

 private:
  BlockCache cache_;
};

}  // namespace pdegen

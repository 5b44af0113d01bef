// Caching device allocator, ordered on the compute stream: freed blocks go back to size-keyed free
// lists and are handed out again without cudaMalloc/cudaFree (which synchronise the whole device).
// Reuse is safe without events because every kernel, library call and copy runs on cuda::stream():
// work queued after the reuse runs after the work that used the block before. Memory used on another
// stream (the reducer's) must stay allocated until that stream is done with it.
// Plain C++ (no CUDA types): declared here in core/ for Tensor, defined by the CUDA backend
// (backend/cuda/device_allocator.cpp); exists only with PDEGEN_HAVE_CUDA.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/allocator.hpp"
#include "core/dtype.hpp"

namespace pdegen::cuda {

class DeviceAllocator {
 public:
  static constexpr size_t alignment = 256;  // cudaMalloc's own; what vectorised loads and cuDNN want

  static DeviceAllocator& instance();

  // At least `bytes` bytes of device memory on the selected device; 0 gives nullptr. On
  // cudaErrorMemoryAllocation it frees the cache and tries once more, then throws with the stats.
  void* allocate(size_t bytes);
  // `bytes` must be the value passed to allocate().
  void release(void* p, size_t bytes);
  // Returns cached blocks to the driver (synchronises the stream first).
  void empty_cache();
  AllocatorStats stats() const;
  void reset_peak();

  // Rounding classes: 512 B below 1 MiB, 2 MiB above (cuDNN workspaces and activations repeat).
  static size_t round_size(size_t bytes);

  DeviceAllocator() = default;
  DeviceAllocator(const DeviceAllocator&) = delete;
  DeviceAllocator& operator=(const DeviceAllocator&) = delete;

 private:
  BlockCache cache_;
};

// Copies `bytes` between host and device memory (either direction, or device to device) on the
// compute stream. Returns when the destination is usable by the host: device-to-host copies wait
// for the stream; host-to-device and device-to-device ones are stream-ordered.
void copy_bytes(void* dst, bool dst_on_device, const void* src, bool src_on_device, size_t bytes);

// Sets `count` elements of `element_bytes` (2, 4 or 8) each to the bit pattern `bits`, on the stream.
void fill_bits(void* dst, int64_t count, size_t element_bytes, uint64_t bits);

// Converts `count` elements of type `from` at `src` into type `to` at `dst` (device memory, distinct
// buffers, from != to), on the stream, with the host conversion's rounding (core/tensor.cpp to_dtype):
// fp32 <-> fp16/bf16 round to nearest even, fp64 goes through fp32 to the 16-bit types.
void convert_elements(void* dst, DType to, const void* src, DType from, int64_t count);

// dst += src for `count` elements of storage type `dtype` (fp32, fp16 or bf16; device memory, the
// sum in fp32), on the stream.
void add_elements(void* dst, const void* src, DType dtype, int64_t count);

}  // namespace pdegen::cuda

// The process's GPU: which device this rank uses, the one compute stream every kernel and library
// call runs on, and the cuDNN/cuBLAS handles bound to it. The first group of functions exists in every
// build (a CPU-only build answers "not built in"), so tests, `pdegen --version` and device selection
// need no #ifdef; the stream and handles exist only where the CUDA backend is compiled.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/allocator.hpp"

#ifdef PDEGEN_HAVE_CUDA
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#endif

namespace pdegen::cuda {

// True when this binary has the CUDA backend AND a usable GPU is present; otherwise false, with the
// reason ("built without CUDA", "no CUDA device: ...") in *reason when given.
bool available(std::string* reason = nullptr);

// Binds this process to device node_local_rank % device_count. Call before the first GPU use;
// throws when CUDA is not available.
void select_device(int node_local_rank);

// "NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB), driver 13.0, runtime 13.0, cuDNN 9.19.0, NCCL 2.28.9";
// throws when CUDA is not available.
std::string describe_device();

// The CUDA, cuDNN and NCCL versions this binary was compiled against, or "not built in this binary".
std::string compiled_versions();

// Waits for all work queued on stream() and reports asynchronous errors. No-op without CUDA.
void synchronize();

// The device allocator's byte counts (all zero without CUDA), and restarting its peak.
AllocatorStats memory_stats();
void reset_memory_peak();

// What the cuDNN convolutions may do with fp32 data: fp32 (FMA only, bitwise-stable and what the
// gradient tests use), tf32 (tensor cores on sm_80+ with 10-bit mantissa products, PyTorch's
// default for convolutions) or fp16_conversion (tensor cores on any sm_70+, inputs rounded to fp16).
enum class ConvMath { fp32, tf32, fp16_conversion };
void set_conv_math(ConvMath math);
ConvMath conv_math();
// Largest cuDNN workspace a convolution algorithm may ask for (bytes, default 256 MiB); algorithms
// that need more are passed over. Plans built after the call see the new limit.
void set_conv_workspace_limit(size_t bytes);
size_t conv_workspace_limit();
// How the convolution algorithms are chosen, once per layer and input shape: true (default) times
// every candidate with cudnnFind*Ex on the first call (PyTorch's cudnn.benchmark), false takes
// cuDNN's heuristic ranking without running anything.
void set_conv_algo_search(bool search);
bool conv_algo_search();

#ifdef PDEGEN_HAVE_CUDA
// The compute stream (non-blocking, created on first use on the selected device).
cudaStream_t stream();
// Handles created lazily and bound to stream().
cudnnHandle_t cudnn();
cublasHandle_t cublas();

// Grid size for one thread per element; kernels index with a 64-bit i and test i < n.
inline unsigned blocks_for(int64_t n, unsigned threads = 256) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > 0x7fffffff ? 0x7fffffff : blocks));
}
#endif

}  // namespace pdegen::cuda

// Checked CUDA, cuDNN, cuBLAS and NCCL calls: a failure throws pdegen::Error with file:line, the call
// text and the library's own message, so a GPU error ends the run through the same path as any other.
// Only included where the CUDA backend is built (PDEGEN_HAVE_CUDA).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <nccl.h>

#include "core/error.hpp"

#define CUDA_CHECK(expr)                                                                                   \
  do {                                                                                                     \
    const cudaError_t e_ = (expr);                                                                         \
    if (e_ != cudaSuccess) [[unlikely]]                                                                    \
      ::pdegen::throw_error(__FILE__, __LINE__,                                                            \
                            ::fmt::format("CUDA call '{}' failed: {} ({})", #expr, cudaGetErrorString(e_), \
                                          cudaGetErrorName(e_)));                                          \
  } while (0)

// After a kernel launch: launch-configuration errors surface here, asynchronous faults at the next
// synchronising call.
#define CUDA_CHECK_LAUNCH()                                                                             \
  do {                                                                                                  \
    const cudaError_t e_ = cudaGetLastError();                                                          \
    if (e_ != cudaSuccess) [[unlikely]]                                                                 \
      ::pdegen::throw_error(__FILE__, __LINE__,                                                         \
                            ::fmt::format("CUDA kernel launch failed: {} ({})", cudaGetErrorString(e_), \
                                          cudaGetErrorName(e_)));                                       \
  } while (0)

#define CUDNN_CHECK(expr)                                                                  \
  do {                                                                                     \
    const cudnnStatus_t s_ = (expr);                                                       \
    if (s_ != CUDNN_STATUS_SUCCESS) [[unlikely]]                                           \
      ::pdegen::throw_error(__FILE__, __LINE__,                                            \
                            ::fmt::format("cuDNN call '{}' failed: {} (status {})", #expr, \
                                          cudnnGetErrorString(s_), static_cast<int>(s_))); \
  } while (0)

#define CUBLAS_CHECK(expr)                                                                   \
  do {                                                                                       \
    const cublasStatus_t s_ = (expr);                                                        \
    if (s_ != CUBLAS_STATUS_SUCCESS) [[unlikely]]                                            \
      ::pdegen::throw_error(__FILE__, __LINE__,                                              \
                            ::fmt::format("cuBLAS call '{}' failed: {} (status {})", #expr,  \
                                          cublasGetStatusString(s_), static_cast<int>(s_))); \
  } while (0)

#define NCCL_CHECK(expr)                                                                  \
  do {                                                                                    \
    const ncclResult_t r_ = (expr);                                                       \
    if (r_ != ncclSuccess) [[unlikely]]                                                   \
      ::pdegen::throw_error(__FILE__, __LINE__,                                           \
                            ::fmt::format("NCCL call '{}' failed: {} (result {})", #expr, \
                                          ncclGetErrorString(r_), static_cast<int>(r_))); \
  } while (0)

// The process's GPU, compute stream and library handles (see cuda_context.hpp), CUDA build.
#ifdef PDEGEN_HAVE_CUDA

#include "backend/cuda/cuda_context.hpp"

#include <mutex>

#include "backend/cuda/cuda_check.hpp"
#include "core/device_allocator.hpp"

namespace pdegen::cuda {

namespace {
struct Context {
  std::mutex mutex;
  int device = -1;  // -1 until select_device() or the first use (then the current device)
  cudaStream_t stream = nullptr;
  cudnnHandle_t cudnn = nullptr;
  cublasHandle_t cublas = nullptr;
};

// Leaked on purpose: handles destroyed after the CUDA runtime shuts down at exit would fail.
Context& context() {
  static auto* c = new Context();
  return *c;
}

// cuDNN 9 numbers its versions major*10000 + minor*100 + patch, 8 used major*1000 + minor*100 + patch.
std::string cudnn_version_string(size_t v) {
  if (v >= 90000) return fmt::format("{}.{}.{}", v / 10000, v / 100 % 100, v % 100);
  return fmt::format("{}.{}.{}", v / 1000, v / 100 % 10, v % 100);
}

std::string cuda_version_string(int v) { return fmt::format("{}.{}", v / 1000, v / 10 % 100); }

// Called with the mutex held: the device every object of this context lives on.
void bind_device_locked(Context& c) {
  if (c.device < 0) CUDA_CHECK(cudaGetDevice(&c.device));
  CUDA_CHECK(cudaSetDevice(c.device));
}
}  // namespace

bool available(std::string* reason) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    if (reason) *reason = fmt::format("no usable CUDA device: {}", cudaGetErrorString(e));
    return false;
  }
  if (count == 0) {
    if (reason) *reason = "no CUDA device present";
    return false;
  }
  return true;
}

void select_device(int node_local_rank) {
  std::string reason;
  PDEGEN_CHECK(available(&reason), "cannot select a GPU: {}", reason);
  int count = 0;
  CUDA_CHECK(cudaGetDeviceCount(&count));
  const int device = node_local_rank % count;
  Context& c = context();
  std::lock_guard lock(c.mutex);
  PDEGEN_CHECK(c.stream == nullptr || c.device == device,
               "select_device({}) -> GPU {} after the stream was created on GPU {}", node_local_rank, device,
               c.device);
  c.device = device;
  // Per calling thread: a communication thread calls this too, with the same rank.
  CUDA_CHECK(cudaSetDevice(device));
}

cudaStream_t stream() {
  Context& c = context();
  std::lock_guard lock(c.mutex);
  if (c.stream == nullptr) {
    bind_device_locked(c);
    // Non-blocking: never serialised against the legacy default stream that libraries may touch.
    CUDA_CHECK(cudaStreamCreateWithFlags(&c.stream, cudaStreamNonBlocking));
  }
  return c.stream;
}

cudnnHandle_t cudnn() {
  const cudaStream_t s = stream();
  Context& c = context();
  std::lock_guard lock(c.mutex);
  if (c.cudnn == nullptr) {
    CUDNN_CHECK(cudnnCreate(&c.cudnn));
    CUDNN_CHECK(cudnnSetStream(c.cudnn, s));
  }
  return c.cudnn;
}

cublasHandle_t cublas() {
  const cudaStream_t s = stream();
  Context& c = context();
  std::lock_guard lock(c.mutex);
  if (c.cublas == nullptr) {
    CUBLAS_CHECK(cublasCreate(&c.cublas));
    CUBLAS_CHECK(cublasSetStream(c.cublas, s));
  }
  return c.cublas;
}

AllocatorStats memory_stats() { return DeviceAllocator::instance().stats(); }
void reset_memory_peak() { DeviceAllocator::instance().reset_peak(); }

void synchronize() {
  Context& c = context();
  cudaStream_t s = nullptr;
  {
    std::lock_guard lock(c.mutex);
    s = c.stream;
  }
  if (s != nullptr) CUDA_CHECK(cudaStreamSynchronize(s));
}

std::string describe_device() {
  std::string reason;
  PDEGEN_CHECK(available(&reason), "no GPU to describe: {}", reason);
  int device = 0, driver = 0, runtime = 0, nccl = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  CUDA_CHECK(cudaDriverGetVersion(&driver));
  CUDA_CHECK(cudaRuntimeGetVersion(&runtime));
  NCCL_CHECK(ncclGetVersion(&nccl));
  return fmt::format("{} (sm_{}{}, {:.1f} GiB, GPU {}), driver {}, runtime {}, cuDNN {}, NCCL {}.{}.{}",
                     prop.name, prop.major, prop.minor, double(prop.totalGlobalMem) / double(1 << 30), device,
                     cuda_version_string(driver), cuda_version_string(runtime),
                     cudnn_version_string(cudnnGetVersion()), nccl / 10000, nccl / 100 % 100, nccl % 100);
}

std::string compiled_versions() {
  return fmt::format("CUDA {}, cuDNN {}.{}.{}, NCCL {}.{}.{}", cuda_version_string(CUDART_VERSION),
                     CUDNN_MAJOR, CUDNN_MINOR, CUDNN_PATCHLEVEL, NCCL_MAJOR, NCCL_MINOR, NCCL_PATCH);
}

}  // namespace pdegen::cuda

#endif  // PDEGEN_HAVE_CUDA

// pdegen --version: what this binary is and what it was built with, for bug reports and job logs.
#include <fmt/format.h>
#include <hdf5.h>
#include <mpi.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

#include <pdegen/build_info.hpp>

#include "app/verbs.hpp"
#include "backend/cuda/cuda_context.hpp"
#include "parallel/launcher.hpp"

namespace pdegen::app {

namespace {

// "cuda (CUDA 13.0, cuDNN 9.19.0, NCCL 2.28.9) on NVIDIA H100 ... (sm_90, ...), driver ..." where a
// GPU is present; the versions compiled against and why no GPU is used otherwise.
std::string cuda_backend() {
#if defined(PDEGEN_HAVE_CUDA)
  std::string reason;
  const std::string built = fmt::format("cuda ({})", cuda::compiled_versions());
  if (!cuda::available(&reason)) return fmt::format("{}: {}", built, reason);
  try {
    return fmt::format("{} on {}", built, cuda::describe_device());
  } catch (const Error& e) {
    return fmt::format("{}: device not usable: {}", built, e.what());
  }
#else
  return "cuda: not built in this binary";
#endif
}

}  // namespace

std::string version_text() {
  const dnnl_version_t* dnnl = dnnl_version();
  unsigned h5_major = 0, h5_minor = 0, h5_release = 0;
  H5get_libversion(&h5_major, &h5_minor, &h5_release);
  const int threads = omp_get_max_threads();
  return fmt::format(
      "pdegen {} (git {}, {} build, {})\n"
      "backends:\n"
      "  cpu (oneDNN {}.{}.{}, OpenMP {} thread{})\n"
      "  {}\n"
      "MPI: {}\n"
      "HDF5: {}.{}.{}\n",
      build::version, build::git_hash, build::build_type, build::compiler, dnnl->major, dnnl->minor,
      dnnl->patch, threads, threads == 1 ? "" : "s", cuda_backend(), mpi_library_version(), h5_major,
      h5_minor, h5_release);
}

}  // namespace pdegen::app

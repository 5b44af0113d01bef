// Error helpers: formatting with the call site, and the one way every rank is stopped.
#include "core/error.hpp"

#include <mpi.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

namespace pdegen {

void throw_error(const char* file, int line, const std::string& what) {
  // Keep only the path below src/ so messages stay short and stable across checkouts.
  std::string f = file;
  if (auto pos = f.rfind("src/"); pos != std::string::npos) f = f.substr(pos);
  throw Error(fmt::format("{} [{}:{}]", what, f, line));
}

std::string mpi_error_string(int code) {
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, buf, &len) != MPI_SUCCESS) return fmt::format("MPI error {}", code);
  return std::string(buf, static_cast<size_t>(len));
}

void abort_all(int code) {
  spdlog::default_logger()->flush();
  std::fflush(stdout);
  std::fflush(stderr);
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  int size = 1;
  if (initialized && !finalized) MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (initialized && !finalized && size > 1) {
    // The launcher forwards each rank's stderr through a pipe; an abort racing that forwarding was
    // seen to lose the error message (every rank failing the same deck check). A moment's grace
    // lets the message out before the job is torn down.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    MPI_Abort(MPI_COMM_WORLD, code);
  }
  // One rank: a plain exit keeps the exit code and skips MPICH's abort banner. Not MPI_Finalize nor
  // exit(): both run HDF5's shutdown, which crashes on a file whose close failed (a full disk).
  std::_Exit(code);
}

}  // namespace pdegen

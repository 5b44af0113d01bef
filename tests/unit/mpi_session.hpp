// MPI for unit tests that run alone (an MPICH singleton) or under `mpiexec.mpich -n P`: started on
// first use with MPI_THREAD_MULTIPLE (the reducer's communication thread needs it) and finalized at
// exit. The shared test main knows nothing of MPI, so serial test binaries never pay for it.
#pragma once

#include <mpi.h>

#include <cstdlib>

namespace pdegen::testing {

inline MPI_Comm mpi_world() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided);
    std::atexit([] {
      int finalized = 0;
      MPI_Finalized(&finalized);
      if (!finalized) MPI_Finalize();
    });
  }
  return MPI_COMM_WORLD;
}

}  // namespace pdegen::testing

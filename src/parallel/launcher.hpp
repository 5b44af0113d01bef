// What launched this process, as far as MPI's world is concerned. A launcher whose process-manager
// interface the MPI library does not speak (srun --mpi=none or pmix with an MPICH built for PMI-1/2,
// an Open MPI mpirun with an MPICH binary) starts N processes that each come up as a 1-rank world:
// N separate runs then write one run directory. pdegen refuses to start when the launcher's count
// and the world's size disagree, before it touches any file.
#pragma once

#include <functional>
#include <string>

namespace pdegen {

// The number of processes the launcher says it started and the environment variable that said so
// (count 0: no launcher variable found, e.g. a plain serial start).
struct LauncherTasks {
  int count = 0;
  std::string variable;
};

using EnvironmentLookup = std::function<const char*(const char*)>;

// In order of authority: PMI_SIZE (MPICH's Hydra, Slurm's pmi2 plugin), OMPI_COMM_WORLD_SIZE (Open
// MPI's launchers), JSM_NAMESPACE_SIZE (LSF's jsrun), SLURM_STEP_NUM_TASKS inside a job step that
// srun started (not the batch script's own step).
LauncherTasks launcher_tasks(const EnvironmentLookup& env);

// Throws UserError naming both counts and the fix when the launcher started another number of
// processes than `world_size`. `library` is the MPI library's version line.
void check_launcher_matches_world(int world_size, const std::string& library, const EnvironmentLookup& env);

// The MPI library's version line ("MPICH Version: 4.0.2"), spaces normalised.
std::string mpi_library_version();

}  // namespace pdegen

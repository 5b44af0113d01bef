// Launcher and MPI world agreement (launcher.hpp).
#include "parallel/launcher.hpp"

#include <fmt/format.h>
#include <mpi.h>

#include <charconv>
#include <cstring>

#include "core/error.hpp"

namespace pdegen {

namespace {

// A positive count, or 0 where the variable is unset or not a number.
int count_of(const char* text) {
  if (text == nullptr) return 0;
  int n = 0;
  const char* end = text + std::strlen(text);
  const auto [ptr, ec] = std::from_chars(text, end, n);
  return ec == std::errc() && ptr == end && n > 0 ? n : 0;
}

// SLURM_STEP_ID of a step srun started: a number below Slurm's reserved ids (the batch script,
// extern and interactive steps are 0xfffffffa and up), so a serial command in the batch script of
// an `sbatch -n 2` job is not taken for a 2-task launch.
bool in_srun_step(const EnvironmentLookup& env) {
  const char* id = env("SLURM_STEP_ID");
  if (id == nullptr) return false;
  unsigned long long step = 0;
  const char* end = id + std::strlen(id);
  const auto [ptr, ec] = std::from_chars(id, end, step);
  return ec == std::errc() && ptr == end && step < 0xfffffffaULL;
}

}  // namespace

LauncherTasks launcher_tasks(const EnvironmentLookup& env) {
  for (const char* variable : {"PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "JSM_NAMESPACE_SIZE"})
    if (const int n = count_of(env(variable)); n > 0) return {n, variable};
  if (in_srun_step(env))
    if (const int n = count_of(env("SLURM_STEP_NUM_TASKS")); n > 0) return {n, "SLURM_STEP_NUM_TASKS"};
  return {};
}

void check_launcher_matches_world(int world_size, const std::string& library, const EnvironmentLookup& env) {
  const LauncherTasks tasks = launcher_tasks(env);
  if (tasks.count == 0 || tasks.count == world_size) return;
  std::string fix;
  if (tasks.variable == "SLURM_STEP_NUM_TASKS")
    fix = fmt::format(
        "srun started its tasks with an MPI plugin this MPI library cannot join (SLURM_MPI_TYPE={}). Pass "
        "srun the plugin that matches it: --mpi=pmi2 for MPICH (Debian's mpich), --mpi=pmix for Open "
        "MPI ('srun --mpi=list' shows what this site has; jobscripts/slurm.sbatch takes PDEGEN_SRUN_MPI)",
        env("SLURM_MPI_TYPE") != nullptr ? env("SLURM_MPI_TYPE") : "unset, the site default");
  else if (tasks.variable == "OMPI_COMM_WORLD_SIZE")
    fix =
        "an Open MPI launcher started this binary, which is built with another MPI: launch it with that "
        "MPI's own launcher (mpiexec.mpich for MPICH)";
  else
    fix =
        "the launcher and the MPI library this binary is built with do not speak the same process-manager "
        "interface: launch it with that MPI's own launcher";
  throw UserError(fmt::format(
      "error: the launcher started {} processes ({}={}) but MPI sees a world of {} ({}): each process would "
      "run "
      "as a separate {}-rank job and they would overwrite each other's files. Nothing was started. {}",
      tasks.count, tasks.variable, tasks.count, world_size, library, world_size, fix));
}

std::string mpi_library_version() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING];
  int length = 0;
  if (MPI_Get_library_version(text, &length) != MPI_SUCCESS) return "unknown";
  // MPICH answers with several lines ("MPICH Version:\t4.0.2\nMPICH Release date: ..."): keep the
  // first, with its tabs made spaces.
  std::string first(text, static_cast<size_t>(length));
  first = first.substr(0, first.find('\n'));
  std::string out;
  for (char c : first) {
    if (c == '\t' || c == ' ') {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else {
      out += c;
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

}  // namespace pdegen

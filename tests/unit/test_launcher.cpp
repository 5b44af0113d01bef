// The launcher's process count against MPI's world: which variable speaks for the launcher, and the
// refusal (with both counts and the fix) when they disagree, from made-up environments.
#include <doctest/doctest.h>

#include <map>
#include <string>

#include "core/error.hpp"
#include "parallel/launcher.hpp"

using namespace pdegen;

namespace {

EnvironmentLookup environment(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const char* name) -> const char* {
    const auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}

std::string refusal(int world, std::map<std::string, std::string> vars) {
  try {
    check_launcher_matches_world(world, "MPICH Version: 4.0.2", environment(std::move(vars)));
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("launcher_tasks: PMI first, then Open MPI, jsrun, and an srun step's task count") {
  CHECK(launcher_tasks(environment({})).count == 0);
  const LauncherTasks hydra =
      launcher_tasks(environment({{"PMI_SIZE", "4"}, {"SLURM_STEP_NUM_TASKS", "1"}, {"SLURM_STEP_ID", "0"}}));
  CHECK(hydra.count == 4);
  CHECK(hydra.variable == "PMI_SIZE");
  CHECK(launcher_tasks(environment({{"OMPI_COMM_WORLD_SIZE", "3"}})).variable == "OMPI_COMM_WORLD_SIZE");
  CHECK(launcher_tasks(environment({{"JSM_NAMESPACE_SIZE", "6"}})).count == 6);
  const LauncherTasks srun = launcher_tasks(
      environment({{"SLURM_STEP_ID", "0"}, {"SLURM_STEP_NUM_TASKS", "2"}, {"SLURM_NTASKS", "2"}}));
  CHECK(srun.count == 2);
  CHECK(srun.variable == "SLURM_STEP_NUM_TASKS");
  // The batch script's own step (and the extern step) launched nothing: a serial command there is fine.
  CHECK(launcher_tasks(environment({{"SLURM_STEP_ID", "4294967291"}, {"SLURM_STEP_NUM_TASKS", "2"}})).count ==
        0);
  CHECK(launcher_tasks(environment({{"SLURM_NTASKS", "2"}})).count == 0);
  // Not a positive number: ignored, not trusted.
  CHECK(launcher_tasks(environment({{"PMI_SIZE", "two"}})).count == 0);
  CHECK(launcher_tasks(environment({{"PMI_SIZE", "0"}, {"OMPI_COMM_WORLD_SIZE", "2"}})).count == 2);
}

TEST_CASE(
    "a launcher whose count matches the world passes: a mismatch is refused with both counts and the fix") {
  CHECK(refusal(2, {{"SLURM_STEP_ID", "3"}, {"SLURM_STEP_NUM_TASKS", "2"}}).empty());
  CHECK(refusal(1, {}).empty());
  CHECK(refusal(4, {{"PMI_SIZE", "4"}}).empty());

  const std::string srun =
      refusal(1, {{"SLURM_STEP_ID", "0"}, {"SLURM_STEP_NUM_TASKS", "2"}, {"SLURM_MPI_TYPE", "none"}});
  CHECK(srun.find("the launcher started 2 processes (SLURM_STEP_NUM_TASKS=2) but MPI sees a world of 1") !=
        std::string::npos);
  CHECK(srun.find("MPICH Version: 4.0.2") != std::string::npos);
  CHECK(srun.find("SLURM_MPI_TYPE=none") != std::string::npos);
  CHECK(srun.find("--mpi=pmi2 for MPICH") != std::string::npos);
  CHECK(srun.find("Nothing was started") != std::string::npos);

  const std::string ompi = refusal(1, {{"OMPI_COMM_WORLD_SIZE", "2"}});
  CHECK(ompi.find("(OMPI_COMM_WORLD_SIZE=2)") != std::string::npos);
  CHECK(ompi.find("mpiexec.mpich") != std::string::npos);
  CHECK(refusal(1, {{"JSM_NAMESPACE_SIZE", "6"}}).find("JSM_NAMESPACE_SIZE=6") != std::string::npos);
}

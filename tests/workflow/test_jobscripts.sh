#!/usr/bin/env bash
# The job scripts (jobscripts/) on this machine: bash -n; each of slurm.sbatch, summit.lsf and
# mpiexec.sh trains tests/decks/tiny.yaml to completion without a scheduler; a resubmitted job
# continues from the checkpoint (3 steps, then training.steps=6 into the same run directory), also
# after the time-limit signal; argument and deck errors stop before launching; and, with stand-in
# srun/scontrol/jsrun commands, the launch lines a real Slurm or LSF job would run.
#   PDEGEN=build/cpu/pdegen bash tests/workflow/test_jobscripts.sh   (from the repository root)
set -u
repo="$(cd "$(dirname "$0")/../.." && pwd)"
PDEGEN="${PDEGEN:-$repo/build/cpu/pdegen}"
PYTHON="${PYTHON:-/usr/bin/python3}"
source "$repo/tests/lib.sh"
require_pdegen
PDEGEN="$(cd "$(dirname "$PDEGEN")" && pwd)/$(basename "$PDEGEN")"
export PDEGEN
deck="$repo/tests/decks/tiny.yaml"
jobs="$repo/jobscripts"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Whatever the machine running the tests has: no scheduler in the environment.
unset SLURM_JOB_ID SLURM_JOB_NAME SLURM_ARRAY_TASK_ID SLURM_ARRAY_JOB_ID SLURM_GPUS_ON_NODE LSB_JOBID \
  LSB_JOBNAME LSB_JOBINDEX PDEGEN_RUNS PDEGEN_RUN_DIR PDEGEN_JOB_NAME PDEGEN_RANKS PDEGEN_HOME CUDA_VISIBLE_DEVICES
json() { "$PYTHON" -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }
steps_column() { cut -d, -f1 "$1" | tail -n +2 | tr '\n' ' '; }

for f in "$jobs"/*; do
  case "$f" in *.md) continue ;; esac
  check "bash -n $(basename "$f")" "bash -n '$f'"
done

# Each script, run as a user would run it here: `bash SCRIPT DECK`, run directory runs/<deck name>.
for script in slurm.sbatch summit.lsf mpiexec.sh; do
  dir="$work/$script"
  mkdir -p "$dir"
  (cd "$dir" && bash "$jobs/$script" "$deck" >"$dir/out.log" 2>&1)
  rc=$?
  run="$dir/runs/tiny"
  check "$script: trains tiny.yaml to completion without a scheduler (exit 0)" "[ $rc -eq 0 ]"
  check "$script: run directory runs/tiny holds summary.json (completed, 6 steps), history.csv, fields" \
    "[ \"\$(json '$run/summary.json' 'd[\"status\"], d[\"steps\"]' 2>/dev/null)\" = \"('completed', 6)\" ] && [ -s '$run/history.csv' ] && [ -s '$run/fields.xdmf' ]"
  check "$script: the deck is copied into the run directory" "cmp -s '$deck' '$run/deck.input.yaml'"
  check "$script: jobs.log records the launch and exit 0" \
    "grep -q 'start job local-' '$run/jobs.log' && grep -q 'exit 0' '$run/jobs.log'"
  check "$script: says it runs without a scheduler, with OpenMP pinning set" \
    "grep -q 'no scheduler; OMP_NUM_THREADS=[0-9]* OMP_PLACES=cores OMP_PROC_BIND=close' '$dir/out.log'"
done

# Resubmission continues: 3 steps, then the same job with training.steps=6 (a longer chain link).
dir="$work/chain"
mkdir -p "$dir"
(cd "$dir" && PDEGEN_JOB_NAME=chain bash "$jobs/slurm.sbatch" "$deck" training.steps=3 >"$dir/1.log" 2>&1)
check "chain: first job (3 steps) exits 0" "[ $? -eq 0 ] && [ -s '$dir/runs/chain/checkpoints/step_00000003.h5' ]"
(cd "$dir" && PDEGEN_JOB_NAME=chain bash "$jobs/slurm.sbatch" "$deck" training.steps=6 >"$dir/2.log" 2>&1)
check "chain: the resubmitted job exits 0" "[ $? -eq 0 ]"
check "chain: it restarts from the step-3 checkpoint" \
  "grep -q 'restarted from runs/chain/checkpoints/step_00000003.h5 at step 3' '$dir/runs/chain/pdegen.log'"
check "chain: summary.json says start_step 3, steps 6, completed" \
  "[ \"\$(json '$dir/runs/chain/summary.json' 'd[\"start_step\"], d[\"steps\"], d[\"status\"]')\" = \"(3, 6, 'completed')\" ]"
check "chain: history.csv has steps 1..6 once each" "[ \"\$(steps_column '$dir/runs/chain/history.csv')\" = '1 2 3 4 5 6 ' ]"
check "chain: jobs.log lists both jobs" "[ \$(grep -c ' start job ' '$dir/runs/chain/jobs.log') -eq 2 ]"
(cd "$dir" && PDEGEN_JOB_NAME=chain bash "$jobs/slurm.sbatch" "$deck" training.steps=6 >"$dir/3.log" 2>&1)
check "chain: a third job finds the training complete and launches nothing" \
  "[ $? -eq 0 ] && grep -q 'already completed all 6 steps' '$dir/3.log' && [ \$(grep -c ' start job ' '$dir/runs/chain/jobs.log') -eq 2 ]"

# The time-limit path: SIGTERM to the job script (as `scancel --signal=TERM --batch` or LSF's -wa TERM
# deliver it) reaches pdegen, which checkpoints and exits 143; the resubmission continues from there.
dir="$work/term"
mkdir -p "$dir"
(cd "$dir" && exec bash "$jobs/mpiexec.sh" "$deck" training.steps=100000 evaluation.every=0 >"$dir/1.log" 2>&1) &
pid=$!
for _ in $(seq 1 600); do
  [ -s "$dir/runs/tiny/history.csv" ] && [ "$(wc -l <"$dir/runs/tiny/history.csv")" -ge 4 ] && break
  sleep 0.1
done
kill -TERM "$pid"
wait "$pid"
rc=$?
ckpt="$(find "$dir/runs/tiny/checkpoints" -name 'step_*.h5' 2>/dev/null | sort | tail -1)"
ckpt="$(basename "${ckpt:-none}")"
stopped="$(echo "$ckpt" | sed -n 's/^step_0*\([0-9][0-9]*\)\.h5$/\1/p')"
check "term: SIGTERM to the job script stops pdegen with exit 143 and a checkpoint" "[ $rc -eq 143 ] && [ -n '$stopped' ]"
check "term: the job says how to continue" "grep -q 'stopped by signal 15 with a checkpoint; resubmit' '$dir/1.log'"
if [ -n "$stopped" ]; then
  (cd "$dir" && bash "$jobs/mpiexec.sh" "$deck" training.steps=$((stopped + 2)) evaluation.every=0 >"$dir/2.log" 2>&1)
  check "term: the resubmission continues at step $stopped and completes" \
    "[ $? -eq 0 ] && [ \"\$(json '$dir/runs/tiny/summary.json' 'd[\"start_step\"], d[\"steps\"]')\" = \"($stopped, $((stopped + 2)))\" ]"
fi

# Two ranks through mpiexec.mpich, each pinned to its core.
if command -v mpiexec.mpich >/dev/null; then
  dir="$work/np2"
  mkdir -p "$dir"
  (cd "$dir" && PDEGEN_RANKS=2 bash "$jobs/mpiexec.sh" "$deck" >"$dir/out.log" 2>&1)
  check "mpiexec.sh: PDEGEN_RANKS=2 trains on 2 ranks through mpiexec.mpich" \
    "[ $? -eq 0 ] && grep -q 'mpiexec.mpich -n 2' '$dir/out.log' && [ \"\$(json '$dir/runs/tiny/summary.json' 'd[\"ranks\"], d[\"status\"]')\" = \"(2, 'completed')\" ]"
fi

# Errors end the job before anything is launched, with exit 2 and a message.
dir="$work/errors"
mkdir -p "$dir"
(cd "$dir" && bash "$jobs/slurm.sbatch" >"$dir/none.log" 2>&1)
check "no arguments: usage, exit 2" "[ $? -eq 2 ] && grep -q 'usage: slurm.sbatch DECK' '$dir/none.log'"
(cd "$dir" && bash "$jobs/summit.lsf" missing.yaml >"$dir/missing.log" 2>&1)
check "a missing deck: exit 2 naming it" "[ $? -eq 2 ] && grep -q \"deck 'missing.yaml' not found\" '$dir/missing.log'"
(cd "$dir" && bash "$jobs/mpiexec.sh" "$deck" stray >"$dir/stray.log" 2>&1)
check "an argument that is no override: exit 2" "[ $? -eq 2 ] && grep -q \"'stray' is not a key.path=value override\" '$dir/stray.log'"
(cd "$dir" && bash "$jobs/mpiexec.sh" "$deck" training.stpes=3 >"$dir/deck.log" 2>&1)
check "a deck error: pdegen check's message, exit 2, nothing launched" \
  "[ $? -eq 2 ] && grep -q \"did you mean 'training.steps'\" '$dir/deck.log' && grep -q 'nothing was launched' '$dir/deck.log' && [ ! -e '$dir/runs/tiny/jobs.log' ]"
(cd "$dir" && bash "$jobs/mpiexec.sh" "$deck" output.dir=elsewhere/x training.steps=2 >"$dir/dir.log" 2>&1)
check "an output.dir override chooses the run directory" \
  "[ $? -eq 0 ] && [ -s '$dir/elsewhere/x/summary.json' ] && [ -s '$dir/elsewhere/x/deck.input.yaml' ]"

# Stand-ins for the schedulers' launchers: they record their arguments and the OpenMP settings, then
# run the command once, serially. Slurm: 2 nodes; LSF: 2 compute nodes plus the launch node.
fake="$work/fakebin"
mkdir -p "$fake"
# srun with a plugin MPICH cannot join (anything but pmi2) starts its tasks as separate processes in
# a job step, as a real one does; with pmi2 it runs the command once.
cat >"$fake/srun" <<'EOF'
#!/bin/bash
echo "srun $* | OMP_NUM_THREADS=$OMP_NUM_THREADS OMP_PLACES=$OMP_PLACES OMP_PROC_BIND=$OMP_PROC_BIND" >>"${FAKE_LOG:-/dev/null}"
mpi=none ntasks=1
while [ $# -gt 0 ] && [ "${1#--}" != "$1" ]; do
  case "$1" in --mpi=*) mpi="${1#--mpi=}" ;; --ntasks=*) ntasks="${1#--ntasks=}" ;; esac
  shift
done
[ "$mpi" = pmi2 ] && OMP_NUM_THREADS=1 exec "$@"
for i in $(seq "$ntasks"); do
  SLURM_STEP_ID=0 SLURM_STEP_NUM_TASKS="$ntasks" SLURM_PROCID=$((i - 1)) OMP_NUM_THREADS=1 "$@" &
done
rc=0
for i in $(seq "$ntasks"); do wait -n || rc=$?; done
exit "$rc"
EOF
cat >"$fake/jsrun" <<'EOF'
#!/bin/bash
echo "jsrun $* | OMP_NUM_THREADS=$OMP_NUM_THREADS OMP_PLACES=$OMP_PLACES OMP_PROC_BIND=$OMP_PROC_BIND" >>"$FAKE_LOG"
while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do [ "$1" = -n ] && shift; shift; done
OMP_NUM_THREADS=1 exec "$@"
EOF
cat >"$fake/scontrol" <<'EOF'
#!/bin/bash
echo "JobId=$SLURM_JOB_ID JobName=$SLURM_JOB_NAME"
echo "   Command=$FAKE_COMMAND"
EOF
chmod +x "$fake"/*
cores="$(lscpu -p=SOCKET,CORE | grep -v '^#' | sort -u | grep -c .)"
sockets="$(lscpu -p=SOCKET | grep -v '^#' | sort -u | grep -c .)"
logical="$(lscpu -p=CPU | grep -v '^#' | grep -c .)"
dir="$work/slurm"
mkdir -p "$dir"
# The batch script as Slurm runs it: a spooled copy elsewhere, found again through scontrol.
cp "$jobs/slurm.sbatch" "$work/spooled_slurm_script"
(cd "$dir" && PATH="$fake:$PATH" FAKE_LOG="$dir/launch.log" FAKE_COMMAND="$jobs/slurm.sbatch" SLURM_JOB_ID=4242 \
  SLURM_JOB_NAME=fakejob SLURM_JOB_NUM_NODES=2 SLURM_CPUS_ON_NODE="$logical" SLURM_SUBMIT_DIR="$dir" \
  bash "$work/spooled_slurm_script" "$deck" >"$dir/out.log" 2>&1)
check "Slurm: a spooled copy of the script finds common.sh and completes" "[ $? -eq 0 ] && grep -q 'job 4242, slurm' '$dir/out.log'"
check "Slurm: the run directory is named after the job (runs/fakejob)" "[ -s '$dir/runs/fakejob/summary.json' ]"
check "Slurm: srun, one rank per socket, pinned to cores, threads = cores per socket" \
  "grep -q -- \"^srun --mpi=pmi2 --nodes=2 --ntasks=$((2 * sockets)) --ntasks-per-node=$sockets --cpus-per-task=$((logical / sockets)) --cpu-bind=cores --kill-on-bad-exit=1 .*/pdegen train .* | OMP_NUM_THREADS=$((cores / sockets)) OMP_PLACES=cores OMP_PROC_BIND=close\" '$dir/launch.log'"
(cd "$dir" && PATH="$fake:$PATH" FAKE_LOG="$dir/gpu.log" PDEGEN_DRY_RUN=1 SLURM_JOB_ID=4243 SLURM_JOB_NAME=gpujob \
  SLURM_JOB_NUM_NODES=3 SLURM_GPUS_ON_NODE=4 SLURM_ARRAY_JOB_ID=4240 SLURM_ARRAY_TASK_ID=7 \
  bash "$jobs/slurm.sbatch" "$deck" >"$dir/gpu.out" 2>&1)
check "Slurm GPU nodes: one rank per GPU (4 per node, 3 nodes)" \
  "[ $? -eq 0 ] && grep -q 'srun --mpi=pmi2 --nodes=3 --ntasks=12 --ntasks-per-node=4 ' '$dir/gpu.out'"
check "Slurm array task: run directory <name>_<task>, job id <array>_<task>" \
  "grep -q 'gpujob_7 (job 4240_7, slurm), run directory runs/gpujob_7' '$dir/gpu.out'"
(cd "$dir" && PATH="$fake:$PATH" PDEGEN_DRY_RUN=1 SLURM_JOB_ID=4244 SLURM_JOB_NAME=part SLURM_JOB_NUM_NODES=1 \
  SLURM_CPUS_ON_NODE=$((logical / cores)) bash "$jobs/slurm.sbatch" "$deck" >"$dir/part.out" 2>&1)
check "Slurm with one core of a node: one thread, not the node's core count" \
  "[ $? -eq 0 ] && grep -q 'OMP_NUM_THREADS=1 ' '$dir/part.out' && grep -q -- '--cpus-per-task=1 ' '$dir/part.out'"
(cd "$dir" && PATH="$fake:$PATH" PDEGEN_DRY_RUN=1 SLURM_JOB_ID=4245 SLURM_JOB_NAME=asked SLURM_JOB_NUM_NODES=2 \
  SLURM_NTASKS=3 SLURM_MPI_TYPE=pmix bash "$jobs/slurm.sbatch" "$deck" >"$dir/asked.out" 2>&1)
check "Slurm: sbatch -n 3 on 2 nodes gives 3 ranks (at most 2 per node); a SLURM_MPI_TYPE given is passed on" \
  "[ $? -eq 0 ] && grep -q 'srun --mpi=pmix --nodes=2 --ntasks=3 --ntasks-per-node=2 ' '$dir/asked.out'"
(cd "$dir" && PATH="$fake:$PATH" PDEGEN_DRY_RUN=1 SLURM_JOB_ID=4246 SLURM_JOB_NAME=pernode SLURM_JOB_NUM_NODES=2 \
  SLURM_NTASKS=4 SLURM_NTASKS_PER_NODE='2(x2)' PDEGEN_SRUN_MPI=pmi2 bash "$jobs/slurm.sbatch" "$deck" >"$dir/pernode.out" 2>&1)
check "Slurm: --ntasks-per-node=2 on 2 nodes gives 4 ranks; PDEGEN_SRUN_MPI chooses the plugin" \
  "[ $? -eq 0 ] && grep -q 'srun --mpi=pmi2 --nodes=2 --ntasks=4 --ntasks-per-node=2 ' '$dir/pernode.out'"
# The launch that failed under a real Slurm: srun --mpi=none starts 2 singletons. pdegen refuses in
# each before touching the run directory, and the job says why.
mkdir -p "$dir/runs/nompi/checkpoints"
(cd "$dir" && PATH="$fake:$PATH" SLURM_JOB_ID=4247 SLURM_JOB_NAME=nompi SLURM_JOB_NUM_NODES=1 SLURM_NTASKS=2 \
  SLURM_MPI_TYPE=none bash "$jobs/slurm.sbatch" "$deck" >"$dir/nompi.out" 2>&1)
check "Slurm with --mpi=none: exit 2, pdegen names both counts and the plugin to use" \
  "[ $? -eq 2 ] && grep -q 'the launcher started 2 processes (SLURM_STEP_NUM_TASKS=2) but MPI sees a world of 1' '$dir/nompi.out' && grep -q -- '--mpi=pmi2 for MPICH' '$dir/nompi.out'"
check "... the job's last line quotes the refusal, not a pdegen.log that does not exist" \
  "tail -n 1 '$dir/nompi.out' | grep -q 'pdegen refused to start (exit 2): .*the launcher started 2 processes'"
check "... and pdegen wrote nothing in the run directory" \
  "[ -z \"\$(ls '$dir/runs/nompi/checkpoints')\" ] && [ ! -e '$dir/runs/nompi/pdegen.log' ] && [ ! -e '$dir/runs/nompi/summary.json' ] && [ ! -e '$dir/runs/nompi/history.csv' ]"

# Staging a dataset to node-local storage (PDEGEN_STAGE_DIR): copied before the launch, read from there.
dir="$work/stage"
mkdir -p "$dir"
"$PDEGEN" dataset "$deck" --samples 12 output.dir="$dir/ds" >"$dir/ds.log" 2>&1
data=(training.objective=data "data.files=$dir/ds/dataset_*.h5")
(cd "$dir" && PDEGEN_STAGE_DIR="$dir/local" PDEGEN_JOB_NAME=staged bash "$jobs/mpiexec.sh" "$deck" "${data[@]}" \
  >"$dir/out.log" 2>&1)
check "staging: the dataset is copied to PDEGEN_STAGE_DIR and the run completes reading it from there" \
  "[ $? -eq 0 ] && [ -s \"\$(ls '$dir'/local/pdegen-local-*/dataset_00000.h5)\" ] && grep -q '^  files: \"\?$dir/local/pdegen-local-[^/]*/dataset_\*.h5' '$dir/runs/staged/deck.resolved.yaml' && [ \"\$(json '$dir/runs/staged/summary.json' 'd[\"status\"]')\" = completed ]"
check "staging: the job says what it staged" "grep -q 'staging 1 dataset file(s), 0 MiB, to $dir/local/pdegen-local-' '$dir/out.log'"
(cd "$dir" && PATH="$fake:$PATH" FAKE_LOG="$dir/launch.log" SLURM_JOB_ID=4250 SLURM_JOB_NAME=stagedslurm \
  SLURM_JOB_NUM_NODES=1 SLURM_NTASKS=1 PDEGEN_STAGE_DIR="$dir/bb" bash "$jobs/slurm.sbatch" "$deck" "${data[@]}" \
  >"$dir/slurm.out" 2>&1)
check "staging under Slurm: one copy per node through srun, then the run on the staged files" \
  "[ $? -eq 0 ] && grep -q '^srun --mpi=none --nodes=1 --ntasks=1 --ntasks-per-node=1 bash -c' '$dir/launch.log' && [ -s '$dir/bb/pdegen-4250/dataset_00000.h5' ] && grep -q 'data.files=$dir/bb/pdegen-4250/dataset_\*.h5' '$dir/launch.log'"
(cd "$dir" && PDEGEN_STAGE_DIR="$dir/local2" PDEGEN_JOB_NAME=nodata bash "$jobs/mpiexec.sh" "$deck" "training.objective=data" \
  "data.files=$dir/nothing_*.h5" >"$dir/nodata.out" 2>&1)
check "staging a pattern that matches nothing: exit 2 before any launch" \
  "[ $? -eq 2 ] && grep -q 'nothing_\*.h5' '$dir/nodata.out' && [ ! -e '$dir/runs/nodata/pdegen.log' ]"

dir="$work/lsf"
mkdir -p "$dir"
printf 'batch3\n' >"$dir/hosts"
for h in a01n01 a01n02; do for _ in $(seq 42); do echo "$h" >>"$dir/hosts"; done; done
(cd "$dir" && PATH="$fake:$PATH" FAKE_LOG="$dir/launch.log" LSB_JOBID=777 LSB_JOBNAME=lsfjob \
  LSB_DJOB_HOSTFILE="$dir/hosts" LS_SUBCWD="$dir" bash "$jobs/summit.lsf" "$deck" >"$dir/out.log" 2>&1)
check "LSF: completes through jsrun, run directory named after the job" \
  "[ $? -eq 0 ] && [ -s '$dir/runs/lsfjob/summary.json' ] && grep -q 'job 777, lsf' '$dir/out.log'"
check "LSF: jsrun -n 12 (6 per node) -a1 -c7 -g1 -bpacked:7, 7 threads per rank" \
  "grep -q -- '^jsrun -n 12 -a1 -c7 -g1 -bpacked:7 -dpacked .*/pdegen train .* | OMP_NUM_THREADS=7 OMP_PLACES=cores OMP_PROC_BIND=close' '$dir/launch.log'"

finish

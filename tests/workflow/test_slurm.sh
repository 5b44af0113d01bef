#!/usr/bin/env bash
# jobscripts/slurm.sbatch under a real single-node Slurm (Debian's slurmctld, slurmd and munge,
# installed here when missing and this is root; a private slurm.conf on private ports, daemons
# started and stopped by this test, site default MpiDefault=none as the cluster it was first tried
# on): 1 rank; 2 ranks through PDEGEN_RANKS_PER_NODE=2 and through `sbatch -n 2`, both with
# summary.json ranks 2; with SLURM_MPI_TYPE=none forced, the job fails within seconds with pdegen's
# mismatch message and pdegen writes nothing in the run directory; a job stopped by SIGTERM and
# resubmitted under its name continues from its checkpoint; a tools/sweep job array runs every
# point; a step srun cannot make ends with srun's error quoted; a dataset staged per node
# (PDEGEN_STAGE_DIR) is what 2 ranks train from. Reported as skipped, with the
# reason, where Slurm cannot be installed or started.
#   PDEGEN=build/cpu/pdegen bash tests/workflow/test_slurm.sh   (from the repository root, as root)
set -u
repo="$(cd "$(dirname "$0")/../.." && pwd)"
PDEGEN="${PDEGEN:-$repo/build/cpu/pdegen}"
PYTHON="${PYTHON:-/usr/bin/python3}"
source "$repo/tests/lib.sh"
require_pdegen
PDEGEN="$(cd "$(dirname "$PDEGEN")" && pwd)/$(basename "$PDEGEN")"
export PDEGEN PDEGEN_HOME="$repo"
unset SLURM_JOB_ID SLURM_JOB_NAME SLURM_ARRAY_TASK_ID SLURM_ARRAY_JOB_ID SLURM_NTASKS SLURM_MPI_TYPE \
  PDEGEN_RUNS PDEGEN_RUN_DIR PDEGEN_JOB_NAME PDEGEN_RANKS PDEGEN_RANKS_PER_NODE PDEGEN_SRUN_MPI OMP_NUM_THREADS
deck="$repo/tests/decks/tiny.yaml"
work="$(mktemp -d)"
pids=()
started_munged=0
stop_slurm() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  [ "$started_munged" = 0 ] || pkill -x munged
  rm -rf "$work"
}
trap stop_slurm EXIT
json() { "$PYTHON" -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

# ---- Slurm and munge: installed if missing, started privately -----------------------------------
[ "$(id -u)" = 0 ] || skip "slurmd needs root to start job steps, and this is not root"
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null ||
  ! command -v munged >/dev/null; then
  command -v apt-get >/dev/null || skip "Slurm is not installed and there is no apt-get"
  export DEBIAN_FRONTEND=noninteractive
  pkgs=(slurmctld slurmd slurm-client munge)
  if ! apt-get install -y --no-install-recommends "${pkgs[@]}" >"$work/apt.log" 2>&1; then
    apt-get update >>"$work/apt.log" 2>&1
    apt-get install -y --no-install-recommends "${pkgs[@]}" >>"$work/apt.log" 2>&1 ||
      skip "cannot install ${pkgs[*]}: $(tail -n 1 "$work/apt.log")"
  fi
fi
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  [ -s /etc/munge/munge.key ] || mungekey --create >/dev/null 2>&1 || /usr/sbin/create-munge-key -f >/dev/null 2>&1
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge/munge.key 2>/dev/null
  runuser -u munge -- /usr/sbin/munged >"$work/munged.log" 2>&1 || /usr/sbin/munged --force >>"$work/munged.log" 2>&1
  started_munged=1
  sleep 1
  munge -n 2>/dev/null | unmunge >/dev/null 2>&1 || skip "munged does not start here: $(tail -n 1 "$work/munged.log")"
fi

state="$work/slurm"
mkdir -p "$state/spool" "$state/save"
port=$((20000 + $$ % 20000))
node_line="$(slurmd -C 2>/dev/null | head -n 1)"
case "$node_line" in NodeName=*) ;; *) skip "slurmd -C does not describe this node: $node_line" ;; esac
node="$(echo "$node_line" | sed 's/^NodeName=\([^ ]*\).*/\1/')"
export SLURM_CONF="$state/slurm.conf"
cat >"$SLURM_CONF" <<EOF
ClusterName=pdegentest
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=$state/save
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=600
$node_line NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=test Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld -D -c -f "$SLURM_CONF" >"$state/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -f "$SLURM_CONF" -N "$node" >"$state/slurmd.out" 2>&1 &
pids+=($!)
up=0
for _ in $(seq 60); do
  if [ "$(sinfo -h -n "$node" -o %t 2>/dev/null)" = idle ]; then up=1 && break; fi
  sleep 0.5
done
[ "$up" = 1 ] || skip "Slurm did not start here: $(tail -n 2 "$state/slurmctld.log" "$state/slurmd.log" 2>/dev/null | tr '\n' ' ')"
echo "Slurm $(sinfo --version | cut -d' ' -f2) up on $node: $node_line"

# ---- jobs -----------------------------------------------------------------------------------------
cd "$work" || exit 1
# submit NAME [sbatch options] -- [script args]: the job id.
submit() {
  local name=$1
  shift
  local opts=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1") && shift; done
  shift
  sbatch --parsable -J "$name" -o "$work/$name-%j.out" "${opts[@]}" "$repo/jobscripts/slurm.sbatch" "$@"
}
# wait_job JOBID [SECONDS]: until the job (every array task) has left the queue; 1 on timeout.
wait_job() {
  local t=0
  while [ -n "$(squeue -h -j "$1" 2>/dev/null)" ]; do
    sleep 0.5
    t=$((t + 1))
    if [ "$t" -ge $((2 * ${2:-120})) ]; then scancel "$1" && return 1; fi
  done
}
job_state() { scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' | head -n 1; }
ranks_of() { json "$work/runs/$1/summary.json" 'd["status"], d["ranks"]' 2>/dev/null; }

jid=$(submit one -- "$deck")
wait_job "$jid"
check "1 rank: the job completes, summary.json says completed on 1 rank" \
  "[ '$(job_state "$jid")' = COMPLETED ] && [ \"\$(ranks_of one)\" = \"('completed', 1)\" ]"
check "... launched through srun --mpi=pmi2 (the MPI pdegen is built with), not the site default none" \
  "grep -q 'pdegen job: srun --mpi=pmi2 ' $work/one-$jid.out"

jid=$(PDEGEN_RANKS_PER_NODE=2 submit pernode -- "$deck")
wait_job "$jid"
check "PDEGEN_RANKS_PER_NODE=2 sbatch ...: completes with summary.json ranks 2" \
  "[ '$(job_state "$jid")' = COMPLETED ] && [ \"\$(ranks_of pernode)\" = \"('completed', 2)\" ]"

jid=$(submit dashn -n 2 -- "$deck")
wait_job "$jid"
check "sbatch -n 2 ...: completes with summary.json ranks 2" \
  "[ '$(job_state "$jid")' = COMPLETED ] && [ \"\$(ranks_of dashn)\" = \"('completed', 2)\" ]"
check "... every rank in one world (pdegen.log: training on 2 rank(s))" "grep -q 'training on 2 rank(s)' '$work/runs/dashn/pdegen.log'"

# The wrong plugin, fresh and on the run directory of the completed 2-rank job continued to more
# steps: every file pdegen keeps there stays byte for byte as it was (the job script's own records,
# jobs.log and check.out, note the attempt).
digest() { (cd "$work/runs/$1" && find . -type f ! -name jobs.log ! -name check.out | sort | xargs md5sum); }
before="$(digest dashn)"
start=$(date +%s)
jid=$(SLURM_MPI_TYPE=none submit nompi -n 2 -- "$deck")
wait_job "$jid" 60
seconds=$(($(date +%s) - start))
check "SLURM_MPI_TYPE=none: the job fails (measured ${seconds} s) with pdegen's mismatch message" \
  "[ '$(job_state "$jid")' = FAILED ] && [ $seconds -le 30 ] && grep -q 'the launcher started 2 processes (SLURM_STEP_NUM_TASKS=2) but MPI sees a world of 1' $work/nompi-$jid.out"
check "... and the job's last line says why (not a missing pdegen.log)" \
  "tail -n 1 $work/nompi-$jid.out | grep -q 'pdegen refused to start (exit 2)'"
check "... and pdegen wrote nothing in the run directory" \
  "[ ! -e '$work/runs/nompi/pdegen.log' ] && [ ! -e '$work/runs/nompi/summary.json' ] && [ ! -e '$work/runs/nompi/history.csv' ] && [ -z \"\$(ls -A '$work/runs/nompi/checkpoints' 2>/dev/null)\" ]"
jid=$(SLURM_MPI_TYPE=none submit dashn -n 2 -- "$deck" training.steps=12)
wait_job "$jid" 60
check "the wrong plugin on a run directory with a completed run: refused, and not one of its files changed" \
  "[ '$(job_state "$jid")' = FAILED ] && grep -q 'the launcher started 2 processes' $work/dashn-$jid.out && [ \"\$(digest dashn)\" = '$before' ] && [ -n '$before' ]"

# A step srun cannot make (more tasks than the node's CPUs): the job's last line quotes srun's error.
cpus=$(echo "$node_line" | sed 's/.* CPUs=\([0-9]*\).*/\1/')
jid=$(PDEGEN_RANKS_PER_NODE=$((2 * cpus)) submit toomany -- "$deck")
wait_job "$jid" 60
check "$((2 * cpus)) ranks on $cpus CPUs: the job fails, its last line quoting srun's own error" \
  "[ '$(job_state "$jid")' = FAILED ] && tail -n 1 $work/toomany-$jid.out | grep -q 'the launch failed with exit code [0-9]* before pdegen wrote its log: .*srun: error'"

# Stop and resubmit: SIGTERM mid-run (as the time limit's warning sends it), then the same job name.
long=(problem.resolution=64 training.steps=300 training.checkpoint_every=1000 training.log_every=1)
jid=$(submit chain -- "$deck" "${long[@]}")
for _ in $(seq 240); do
  [ "$(wc -l 2>/dev/null <"$work/runs/chain/history.csv" || echo 0)" -gt 20 ] && break
  sleep 0.5
done
scancel --signal=TERM "$jid"
wait_job "$jid"
stopped=$(json "$work/runs/chain/summary.json" 'd["steps"]' 2>/dev/null)
check "a job stopped by SIGTERM writes a checkpoint and says so (stopped at step ${stopped:-?})" \
  "[ \"\$(json '$work/runs/chain/summary.json' 'd[\"status\"]')\" = interrupted ] && ls '$work/runs/chain/checkpoints/' | grep -q 'step_' && grep -q 'stopped by signal 15 with a checkpoint' $work/chain-$jid.out"
jid=$(submit chain -- "$deck" "${long[@]}")
wait_job "$jid"
check "resubmitted under its name, it continues from that checkpoint and completes" \
  "[ '$(job_state "$jid")' = COMPLETED ] && grep -q 'restarted from .*step_0*$stopped.h5 at step $stopped' '$work/runs/chain/pdegen.log' && [ \"\$(json '$work/runs/chain/summary.json' 'd[\"status\"], d[\"steps\"]')\" = \"('completed', 300)\" ]"

# A dataset staged to node-local storage by srun (one copy per node) before 2 ranks train from it.
"$PDEGEN" dataset "$deck" --samples 12 output.dir="$work/ds" >"$work/ds.log" 2>&1
jid=$(PDEGEN_STAGE_DIR="$work/nodelocal" PDEGEN_RANKS_PER_NODE=2 submit staged -- "$deck" training.objective=data \
  "data.files=$work/ds/dataset_*.h5")
wait_job "$jid"
check "PDEGEN_STAGE_DIR: the dataset is staged per node through srun and 2 ranks train from the copy" \
  "[ '$(job_state "$jid")' = COMPLETED ] && [ \"\$(ranks_of staged)\" = \"('completed', 2)\" ] && [ -s '$work/nodelocal/pdegen-$jid/dataset_00000.h5' ] && grep -q 'files: \"\?$work/nodelocal/pdegen-$jid/dataset_' '$work/runs/staged/deck.resolved.yaml'"

# A tools/sweep job array: two points, each through slurm.sbatch.
cat >"$work/sweep.yaml" <<EOF
base: $deck
name: sw
output: $work/sweep
set:
  training.steps: 4
grid:
  optimizer.lr: [1.0e-3, 2.0e-3]
EOF
if "$PYTHON" "$repo/tools/sweep" make "$work/sweep.yaml" >"$work/sweep_make.log" 2>&1; then
  jid=$(cd "$work/sweep" && sbatch --parsable -o "$work/sweep-%A_%a.out" slurm_array.sbatch)
  wait_job "$jid"
  check "a tools/sweep array: both points complete" \
    "[ \"\$(json '$work/sweep/runs/p001/summary.json' 'd[\"status\"]')\" = completed ] && [ \"\$(json '$work/sweep/runs/p002/summary.json' 'd[\"status\"]')\" = completed ]"
else
  fail "tools/sweep make" "$(tail -n 2 "$work/sweep_make.log")"
fi

finish

# shellcheck shell=bash
# Shared logic of the pdegen job scripts (slurm.sbatch, summit.lsf, mpiexec.sh); sourced, not run.
#
# A job script calls, in this order:
#   pdegen_job_setup "$@"      parse DECK [key.path=value ...], find the binary, name the run
#                              directory after the job, copy the deck there, validate the deck
#   pdegen_threads N           OpenMP threads per rank and their pinning
#   pdegen_run LAUNCHER...     launch `pdegen train` (LAUNCHER = srun ..., jsrun ..., mpiexec.mpich
#                              ..., or nothing) and report how the run ended
# and pdegen_local_launcher fills PDEGEN_LAUNCH when no scheduler is present, so every script also
# runs on a workstation (and in the tests) unchanged.
#
# Environment read here (all optional):
#   PDEGEN          the pdegen binary (default: build/cuda/pdegen on GPU nodes if built, else
#                   build/cpu/pdegen of this checkout, else `pdegen` on PATH)
#   PDEGEN_RUNS     parent of run directories (default: runs, relative to the submission directory)
#   PDEGEN_RUN_DIR  the run directory itself (default: $PDEGEN_RUNS/<job name>); an output.dir=...
#                   override on the command line wins over both
#   PDEGEN_JOB_NAME the job name outside a scheduler (default: the deck's file name without .yaml)
#   PDEGEN_RANKS    ranks without a scheduler (default 1: a serial run; >1 uses mpiexec.mpich)
#   PDEGEN_RANKS_PER_NODE  ranks per node instead of the job's task count, or one per GPU or socket
#                   (slurm.sbatch, summit.lsf, mpiexec.sh)
#   PDEGEN_SRUN_MPI srun's --mpi plugin (default: SLURM_MPI_TYPE, else pmi2 for MPICH, pmix for Open MPI)
#   PDEGEN_THREADS, PDEGEN_OMP_PLACES, PDEGEN_OMP_PROC_BIND  instead of the layout's OpenMP settings
#   PDEGEN_REQUEUE  1: a run stopped by the scheduler's warning signal requeues its own job
#   PDEGEN_DRY_RUN  1: print the launch command instead of running it
#   PDEGEN_FORCE    1: launch even when the run directory already completed training.steps
#   PDEGEN_STAGE_DIR  node-local storage (Summit's burst buffer $BBPATH, a node's /tmp or $TMPDIR):
#                   the deck's dataset (data.files) is copied there on every node before the launch,
#                   and the run reads it from there (pdegen_stage_data)

# The checkout the scripts belong to: $PDEGEN_HOME, else the directory above this file.
PDEGEN_HOME="${PDEGEN_HOME:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"

pdegen_die() {
  echo "pdegen job: error: $*" >&2
  exit 2
}

pdegen_usage() {
  cat <<EOF
usage: $1 DECK [key.path=value ...]
  Trains DECK with pdegen in a run directory named after the job (\$PDEGEN_RUNS/<job name>,
  default runs/<job name>; an output.dir=... override chooses it instead). A resubmitted job with
  the same name continues from the newest checkpoint there (training.restart=latest).
  See jobscripts/README.md and docs/user-guide.md.
EOF
}

# Which batch system started us: slurm, lsf, or none (run directly on this machine).
pdegen_scheduler() {
  if [ -n "${SLURM_JOB_ID:-}" ] && command -v srun >/dev/null; then
    echo slurm
  elif [ -n "${LSB_JOBID:-}" ] && command -v jsrun >/dev/null; then
    echo lsf
  else
    echo none
  fi
}

# A name usable as a directory: letters, digits, '.', '_', '-'.
pdegen_sanitize() {
  local s="${1//[^A-Za-z0-9._-]/_}"
  echo "${s:-job}"
}

# The job's name: the scheduler's (-J/--job-name), unless it is the scheduler's default (the script
# file name), in which case the deck's file name. Array tasks get their index appended.
pdegen_job_name() {
  local deck_name name="" script_name
  deck_name="$(basename "$PDEGEN_DECK")"
  deck_name="${deck_name%.yaml}"
  deck_name="${deck_name%.yml}"
  script_name="$(basename "$0")"
  case "$PDEGEN_SCHEDULER" in
    slurm)
      name="${SLURM_JOB_NAME:-}"
      if [ -n "${SLURM_ARRAY_TASK_ID:-}" ] && [ -n "$name" ]; then name="${name}_${SLURM_ARRAY_TASK_ID}"; fi
      ;;
    lsf)
      name="${LSB_JOBNAME:-}"
      # LSF names array elements "name[3]"; LSB_JOBINDEX is 0 outside arrays.
      if [ "${LSB_JOBINDEX:-0}" != 0 ]; then name="${name%%\[*}_${LSB_JOBINDEX}"; fi
      ;;
  esac
  case "$name" in
    "" | "$script_name" | *" "* | */*) name="${PDEGEN_JOB_NAME:-$deck_name}" ;;
  esac
  pdegen_sanitize "$name"
}

pdegen_job_id() {
  if [ -n "${SLURM_ARRAY_JOB_ID:-}" ] && [ -n "${SLURM_ARRAY_TASK_ID:-}" ]; then
    echo "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"
  elif [ -n "${SLURM_JOB_ID:-}" ]; then
    echo "$SLURM_JOB_ID"
  elif [ -n "${LSB_JOBID:-}" ]; then
    if [ "${LSB_JOBINDEX:-0}" != 0 ]; then echo "${LSB_JOBID}[${LSB_JOBINDEX}]"; else echo "$LSB_JOBID"; fi
  else
    echo "local-$(hostname -s 2>/dev/null || echo host)-$$"
  fi
}

# The pdegen binary: $PDEGEN, else this checkout's build (the CUDA build on a node with GPUs).
pdegen_find_binary() {
  if [ -n "${PDEGEN:-}" ]; then
    [ -x "$PDEGEN" ] || pdegen_die "PDEGEN=$PDEGEN is not an executable"
    echo "$PDEGEN"
    return
  fi
  if [ "$(pdegen_gpus_on_node)" -gt 0 ] && [ -x "$PDEGEN_HOME/build/cuda/pdegen" ]; then
    echo "$PDEGEN_HOME/build/cuda/pdegen"
  elif [ -x "$PDEGEN_HOME/build/cpu/pdegen" ]; then
    echo "$PDEGEN_HOME/build/cpu/pdegen"
  elif command -v pdegen >/dev/null; then
    command -v pdegen
  else
    pdegen_die "no pdegen binary: build it (cmake --preset cpu && cmake --build --preset cpu) or set PDEGEN"
  fi
}

# GPUs this node gives the job (0 on CPU nodes).
pdegen_gpus_on_node() {
  local n="${SLURM_GPUS_ON_NODE:-}"
  if [ -z "$n" ] && [ -n "${CUDA_VISIBLE_DEVICES:-}" ] && [ "${CUDA_VISIBLE_DEVICES}" != NoDevFiles ]; then
    n=$(echo "$CUDA_VISIBLE_DEVICES" | tr ',' '\n' | grep -c .)
  fi
  echo "${n:-0}"
}

# Sockets and physical cores of this node (hardware threads do not count: pdegen's kernels keep a
# core's vector units busy, a second hyper-thread only competes for them).
pdegen_sockets() {
  local n
  n=$(lscpu -p=SOCKET 2>/dev/null | grep -v '^#' | sort -u | grep -c .)
  if [ -z "$n" ] || [ "$n" -eq 0 ]; then n=1; fi
  echo "$n"
}
pdegen_cores() {
  local n
  n=$(lscpu -p=SOCKET,CORE 2>/dev/null | grep -v '^#' | sort -u | grep -c .)
  if [ -z "$n" ] || [ "$n" -eq 0 ]; then n=$(nproc); fi
  echo "$n"
}
# Hardware threads per core (2 with hyper-threading), to turn a scheduler's CPU count into cores.
pdegen_threads_per_core() {
  local logical t
  logical=$(lscpu -p=CPU 2>/dev/null | grep -v '^#' | grep -c .)
  t=$((${logical:-0} / $(pdegen_cores)))
  if [ "$t" -lt 1 ]; then t=1; fi
  echo "$t"
}

# The srun MPI plugin (--mpi) for the MPI library pdegen is built with: PDEGEN_SRUN_MPI, else the
# SLURM_MPI_TYPE the job was given, else pmi2 for MPICH and its kin (Debian's MPICH 4 joins its ranks
# through PMI-1/2 only: under none or pmix each rank would start as its own 1-rank job, which pdegen
# refuses) and pmix for Open MPI.
pdegen_srun_mpi() {
  if [ -n "${PDEGEN_SRUN_MPI:-}" ]; then
    echo "$PDEGEN_SRUN_MPI"
  elif [ -n "${SLURM_MPI_TYPE:-}" ]; then
    echo "$SLURM_MPI_TYPE"
  else
    case "$("$PDEGEN_BIN" --version 2>/dev/null | grep '^MPI:')" in
      *"Open MPI"*) echo pmix ;;
      *) echo pmi2 ;;
    esac
  fi
}

pdegen_job_setup() {
  if [ $# -lt 1 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
    pdegen_usage "$(basename "$0")"
    [ $# -ge 1 ] && exit 0
    exit 2
  fi
  PDEGEN_DECK="$1"
  shift
  [ -f "$PDEGEN_DECK" ] || pdegen_die "deck '$PDEGEN_DECK' not found (from $(pwd))"
  PDEGEN_OVERRIDES=()
  local run_dir="" restart_given=0
  while [ $# -gt 0 ]; do
    case "$1" in
      output.dir=*) run_dir="${1#output.dir=}" ;;
      training.restart=*) restart_given=1 ;;
      --restart)
        [ $# -ge 2 ] || pdegen_die "--restart needs a checkpoint file"
        restart_given=1
        shift
        set -- "training.restart=$1" "${@:2}"
        ;;
      *=*) ;;
      *) pdegen_die "argument '$1' is not a key.path=value override (usage: $(basename "$0") DECK [key.path=value ...])" ;;
    esac
    PDEGEN_OVERRIDES+=("$1")
    shift
  done

  PDEGEN_SCHEDULER="$(pdegen_scheduler)"
  if [ "$PDEGEN_SCHEDULER" = none ] && [ -n "${SLURM_JOB_ID:-}${LSB_JOBID:-}" ]; then
    echo "pdegen job: warning: inside a batch job but without its launcher (srun/jsrun):" \
      "running on this node only, through mpiexec.mpich or serially" >&2
  fi
  PDEGEN_JOB_NAME="$(pdegen_job_name)"
  PDEGEN_JOB_ID="$(pdegen_job_id)"
  PDEGEN_BIN="$(pdegen_find_binary)" || exit 2
  if [ -z "$run_dir" ]; then
    run_dir="${PDEGEN_RUN_DIR:-${PDEGEN_RUNS:-runs}/$PDEGEN_JOB_NAME}"
    PDEGEN_OVERRIDES+=("output.dir=$run_dir")
  fi
  PDEGEN_RUN_DIR="$run_dir"
  # A resubmitted job (same name, so same directory) continues from its newest checkpoint; the
  # first one finds none and starts at step 0. An explicit training.restart wins.
  [ "$restart_given" = 1 ] || PDEGEN_OVERRIDES+=("training.restart=latest")

  mkdir -p "$PDEGEN_RUN_DIR" || pdegen_die "cannot create the run directory '$PDEGEN_RUN_DIR'"
  # The deck as submitted, next to pdegen's own deck.resolved.yaml. A resubmission with an edited
  # deck keeps the previous copy, so the run directory shows what each part of a chain used.
  local copy="$PDEGEN_RUN_DIR/deck.input.yaml"
  if [ -f "$copy" ] && ! cmp -s "$PDEGEN_DECK" "$copy"; then
    local n=1
    while [ -e "$copy.$n" ]; do n=$((n + 1)); done
    mv "$copy" "$copy.$n"
    echo "pdegen job: warning: the deck differs from the one this run directory was started with" \
      "(kept as $copy.$n)" >&2
  fi
  cp "$PDEGEN_DECK" "$copy"

  # Deck errors end the job here, serially and in a second, before any rank is launched.
  if ! "$PDEGEN_BIN" check "$PDEGEN_DECK" "${PDEGEN_OVERRIDES[@]}" >"$PDEGEN_RUN_DIR/check.out" 2>&1; then
    cat "$PDEGEN_RUN_DIR/check.out" >&2
    pdegen_die "the deck does not validate (pdegen check); nothing was launched"
  fi
  export PDEGEN_JOB_NAME PDEGEN_JOB_ID

  # A chain that outlived its training (the last job completed it) ends here without launching.
  local want done_steps
  want="$(awk '/^training:/ {t = 1; next} /^[^ #]/ {t = 0} t && /^  steps:/ {print $2; exit}' "$PDEGEN_RUN_DIR/check.out")"
  done_steps="$(sed -n 's/^  "steps": \([0-9]*\),*$/\1/p' "$PDEGEN_RUN_DIR/summary.json" 2>/dev/null)" || true
  if [ "${PDEGEN_FORCE:-0}" != 1 ] && [ -n "$want" ] && [ "$done_steps" = "$want" ] &&
    grep -q '^  "status": "completed"' "$PDEGEN_RUN_DIR/summary.json" 2>/dev/null; then
    echo "pdegen job: $PDEGEN_RUN_DIR already completed all $want steps; nothing to do (PDEGEN_FORCE=1 runs anyway)"
    exit 0
  fi
}

# OpenMP threads per rank ($1), pinned to cores next to each other ($2: OMP_PROC_BIND, default
# close); the launcher confines each rank to its own cores, so threads of different ranks never
# share one. Set from the job's layout, not inherited: batch systems copy the submitting shell's
# environment, and an OMP_NUM_THREADS left over from a login node would silently starve the job.
# PDEGEN_THREADS, PDEGEN_OMP_PLACES and PDEGEN_OMP_PROC_BIND override them on purpose.
pdegen_threads() {
  export OMP_NUM_THREADS="${PDEGEN_THREADS:-$1}"
  export OMP_PLACES="${PDEGEN_OMP_PLACES:-cores}"
  export OMP_PROC_BIND="${PDEGEN_OMP_PROC_BIND:-${2:-close}}"
}

# Without a scheduler: PDEGEN_RANKS ranks through MPICH's launcher (never the bare `mpiexec`, which
# Debian's ParaView turns into OpenMPI's), each bound to its share of this machine's cores, or one
# serial process.
# shellcheck disable=SC2034  # PDEGEN_LAUNCH is read by the job scripts
pdegen_local_launcher() {
  local ranks="${PDEGEN_RANKS:-1}" cores threads
  cores="$(pdegen_cores)"
  threads=$((cores / ranks))
  [ "$threads" -ge 1 ] || threads=1
  PDEGEN_LAUNCH=()
  local bind=close
  if [ "$ranks" -gt 1 ]; then
    command -v mpiexec.mpich >/dev/null || pdegen_die "PDEGEN_RANKS=$ranks needs mpiexec.mpich (Debian: mpich)"
    if [ $((ranks * threads)) -le "$cores" ]; then
      PDEGEN_LAUNCH=(mpiexec.mpich -n "$ranks" -bind-to "core:$threads")
    else
      # More ranks than cores (tests): pinning would stack ranks on one core; let the OS schedule.
      PDEGEN_LAUNCH=(mpiexec.mpich -n "$ranks")
      bind=false
    fi
  fi
  pdegen_threads "$threads" "$bind"
  PDEGEN_LAYOUT="1 node x $ranks rank(s) x $OMP_NUM_THREADS thread(s), no scheduler"
}

# With PDEGEN_STAGE_DIR, copies the files of the deck's data.files (read from the resolved deck
# that pdegen check wrote) into $PDEGEN_STAGE_DIR/pdegen-<job id> on every node, through "$@" (a
# launcher that starts one process per node, or nothing on one node), checks the copies' sizes, and
# points data.files there. A restart from staged files is exact: checkpoints record the records'
# fingerprint, not their path, and data.files may change between the jobs of a chain.
pdegen_stage_data() {
  [ -n "${PDEGEN_STAGE_DIR:-}" ] || return 0
  local pattern
  pattern="$(awk '/^data:/ {d = 1; next} /^[^ #]/ {d = 0} d && /^  files:/ {sub(/^  files: */, ""); print; exit}' \
    "$PDEGEN_RUN_DIR/check.out")"
  pattern="${pattern#\"}"
  pattern="${pattern%\"}"
  if [ -z "$pattern" ]; then
    echo "pdegen job: PDEGEN_STAGE_DIR is set, but the deck reads no dataset (data.files): nothing staged"
    return 0
  fi
  local files=() f bytes=0
  for f in $pattern; do [ -f "$f" ] && files+=("$f"); done
  [ ${#files[@]} -gt 0 ] || pdegen_die "data.files '$pattern' matches no file to stage"
  for f in "${files[@]}"; do bytes=$((bytes + $(stat -c %s "$f"))); done
  # Expanded here, so that '$BBPATH' (quoted at submission) names the burst buffer LSF sets in the job.
  local stage dir start=$SECONDS
  stage="$(eval echo "$PDEGEN_STAGE_DIR")"
  dir="$stage/pdegen-$PDEGEN_JOB_ID"
  echo "pdegen job: staging ${#files[@]} dataset file(s), $((bytes / 1048576)) MiB, to $dir on every node"
  [ "${PDEGEN_DRY_RUN:-0}" = 1 ] && { echo "pdegen job: (dry run) ${*:-} cp ${files[*]} $dir/"; return 0; }
  # One shell per node: make the directory, copy, and compare every copy's size with its source.
  # shellcheck disable=SC2016  # the script is expanded by that shell, not this one
  "$@" bash -c 'dir=$1; shift; mkdir -p "$dir" || exit 1
    for f; do cp -p "$f" "$dir/" && [ "$(stat -c %s "$f")" = "$(stat -c %s "$dir/${f##*/}")" ] ||
      { echo "pdegen job: error: staging $f to $dir on $(hostname -s) failed" >&2; exit 1; }; done' \
    stage "$dir" "${files[@]}" || pdegen_die "staging the dataset to $dir failed; nothing was launched"
  echo "pdegen job: staged in $((SECONDS - start)) s"
  PDEGEN_OVERRIDES+=("data.files=$dir/${pattern##*/}")
}

# The requeue command of this job's scheduler, for PDEGEN_REQUEUE=1.
pdegen_requeue() {
  case "$PDEGEN_SCHEDULER" in
    slurm) scontrol requeue "$SLURM_JOB_ID" ;;
    lsf) brequeue "$LSB_JOBID" ;;
    *) return 1 ;;
  esac
}

# The first error lines a failed launch printed (the launcher's own, or pdegen's refusal).
pdegen_launch_error() {
  local lines
  sleep 0.2  # tee may still be writing
  lines="$(grep -i -E 'error' "$1" 2>/dev/null | awk '!seen[$0]++' | head -n 3 | tr '\n' ' ')"
  [ -n "$lines" ] || lines="$(grep -m 1 . "$1" 2>/dev/null)"
  echo "${lines:-nothing on stderr}"
}

# Launch `pdegen train` under "$@" (the launcher words), log the job in the run directory, and say
# how it ended. Returns pdegen's exit code: 0 completed, 2 deck error, 4 diverged, 128+N stopped by
# signal N (the scheduler's time-limit warning) after writing a checkpoint.
pdegen_run() {
  local cmd=("$@" "$PDEGEN_BIN" train "$PDEGEN_DECK" "${PDEGEN_OVERRIDES[@]}")
  local stamp
  stamp="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "pdegen job: $PDEGEN_JOB_NAME (job $PDEGEN_JOB_ID, $PDEGEN_SCHEDULER), run directory $PDEGEN_RUN_DIR"
  echo "pdegen job: $PDEGEN_LAYOUT; OMP_NUM_THREADS=$OMP_NUM_THREADS OMP_PLACES=$OMP_PLACES OMP_PROC_BIND=$OMP_PROC_BIND"
  echo "pdegen job: ${cmd[*]}"
  if [ "${PDEGEN_DRY_RUN:-0}" = 1 ]; then return 0; fi
  echo "$stamp start job $PDEGEN_JOB_ID ($PDEGEN_SCHEDULER) on $(hostname -s 2>/dev/null): $PDEGEN_LAYOUT: ${cmd[*]}" \
    >>"$PDEGEN_RUN_DIR/jobs.log"
  # pdegen runs as a child so that a SIGTERM/SIGINT sent to this script (a scheduler that signals
  # only the batch shell, scancel --batch, Ctrl-C) reaches it and it can write its checkpoint.
  # The launcher's stderr is kept aside (not in the run directory) to quote it if the launch fails.
  local rc=0 child errors log_before
  errors="$(mktemp "${TMPDIR:-/tmp}/pdegen-launch.XXXXXX")"
  log_before="$(stat -c %Y "$PDEGEN_RUN_DIR/pdegen.log" 2>/dev/null || echo 0)"
  "${cmd[@]}" 2> >(tee "$errors" >&2) &
  child=$!
  PDEGEN_SIGNALLED=0
  trap 'PDEGEN_SIGNALLED=1; kill -TERM "$child" 2>/dev/null || true' TERM
  trap 'PDEGEN_SIGNALLED=1; kill -INT "$child" 2>/dev/null || true' INT
  while :; do
    PDEGEN_SIGNALLED=0
    rc=0
    wait "$child" || rc=$?
    # A trapped signal ends `wait` early: wait again for pdegen's own exit code.
    [ "$PDEGEN_SIGNALLED" = 1 ] || break
  done
  trap - TERM INT
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) end job $PDEGEN_JOB_ID: exit $rc" >>"$PDEGEN_RUN_DIR/jobs.log"
  case "$rc" in
    0) echo "pdegen job: completed; results in $PDEGEN_RUN_DIR (summary.json, history.csv, fields.xdmf)" ;;
    2) echo "pdegen job: pdegen refused to start (exit 2): $(pdegen_launch_error "$errors")" >&2 ;;
    4) echo "pdegen job: training diverged (exit 4); see $PDEGEN_RUN_DIR/summary.json" >&2 ;;
    129 | 130 | 131 | 138 | 140 | 143)
      echo "pdegen job: stopped by signal $((rc - 128)) with a checkpoint; resubmit the same job" \
        "(same name) to continue" >&2
      if [ "${PDEGEN_REQUEUE:-0}" = 1 ] && pdegen_requeue; then
        echo "pdegen job: requeued job $PDEGEN_JOB_ID" >&2
      fi
      ;;
    *)
      if [ "$(stat -c %Y "$PDEGEN_RUN_DIR/pdegen.log" 2>/dev/null || echo 0)" -gt "$log_before" ]; then
        echo "pdegen job: pdegen failed with exit code $rc; see $PDEGEN_RUN_DIR/pdegen.log" >&2
      else
        echo "pdegen job: the launch failed with exit code $rc before pdegen wrote its log: $(pdegen_launch_error "$errors")" >&2
      fi
      ;;
  esac
  rm -f "$errors"
  return "$rc"
}

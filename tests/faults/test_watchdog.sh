#!/usr/bin/env bash
# No rank waits forever. A rank is stalled with SIGSTOP in the middle of a 2-rank run:
#  - with parallel.collective_timeout=5 the other rank ends the job within seconds, exit 1, naming
#    itself, the operation it waited in and the step;
#  - with the default timeout, SIGTERM to the launcher reaches the blocked rank, which ends the job
#    with 143 after the grace period, saying so;
# and a healthy job stopped by SIGTERM or SIGINT writes its final checkpoint and exits 128+sig
# through the launcher (Hydra reported 0 or 130 at random before).
#   PDEGEN=build/cpu/pdegen PDEGEN_MPIEXEC=mpiexec.mpich bash tests/faults/test_watchdog.sh
set -u
PDEGEN="${PDEGEN:-build/cpu/pdegen}"
MPIEXEC="${PDEGEN_MPIEXEC:-mpiexec.mpich}"
here="$(cd "$(dirname "$0")" && pwd)"
deck="$here/../decks/tiny.yaml"
work="$(mktemp -d)"
cleanup() {
  pkill -KILL -f "output.dir=$work/" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
source "$here/../lib.sh"
require_pdegen
require_mpi
export OMP_NUM_THREADS=1
long=(problem.resolution=64 training.steps=100000 training.log_every=10)

# launch NAME [overrides]: a long 2-rank run in the background; its launcher's pid in $launcher.
launch() {
  local name=$1
  shift
  "$MPIEXEC" -n 2 "$PDEGEN" train "$deck" output.dir="$work/$name" "${long[@]}" "$@" >"$work/$name.log" 2>&1 &
  launcher=$!
  for _ in $(seq 100); do  # until the run has taken steps
    grep -q "step *10/" "$work/$name.log" 2>/dev/null && return 0
    sleep 0.2
  done
  return 1
}
# The pid of rank R of run NAME.
rank_pid() {
  local pid
  for pid in $(pgrep -f "output.dir=$work/$1 "); do
    tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "PMI_RANK=$2" && echo "$pid" && return
  done
}
# wait_for PID SECONDS: the launcher's exit status, or 124 when it is still alive after SECONDS.
wait_for() {
  local t
  for t in $(seq $(($2 * 5))); do
    kill -0 "$1" 2>/dev/null || { wait "$1"; return $?; }
    sleep 0.2
  done
  return 124
}

launch timeout parallel.collective_timeout=5 || fail "the timeout run starts"
kill -STOP "$(rank_pid timeout 1)"
start=$(date +%s)
wait_for "$launcher" 60
rc=$?
took=$(($(date +%s) - start))
check "a stalled rank with collective_timeout 5 s: the job ends with exit 1 (got $rc) within 30 s (took $took s)" \
  "[ $rc -eq 1 ] && [ $took -le 30 ]"
check "the message names the waiting rank, the operation, the step and the setting" \
  "grep -qE 'rank 0 waited [0-9]+ s in .* during .*step [0-9]+: another rank has stalled, died or is doing something else; stopping the job \(parallel.collective_timeout = 5 s\)' '$work/timeout.log'"

launch term || fail "the SIGTERM run starts"
kill -STOP "$(rank_pid term 1)"
sleep 1
start=$(date +%s)
kill -TERM "$launcher"
wait_for "$launcher" 90
rc=$?
took=$(($(date +%s) - start))
check "SIGTERM with a rank blocked: the job ends with 143 (got $rc) after the grace period (took $took s)" \
  "[ $rc -eq 143 ] && [ $took -le 60 ]"
# The launcher, signalled itself, may stop forwarding output: the run's own log has every line.
check "the rank blocked by the stalled one says it received the signal while blocked" \
  "grep -qE 'rank [01] received signal 15 while blocked for [0-9]+ s in .* during .*step [0-9]+' '$work/term.log' '$work/term/pdegen.log'"
grep -qE "received signal 15 .* during .*step [0-9]+" "$work/term.log" "$work/term/pdegen.log" || tail -n 5 "$work/term.log" "$work/term/pdegen.log"

for sig in TERM INT; do
  code=$((128 + $(kill -l "$sig")))
  launch "healthy_$sig" || fail "the healthy $sig run starts"
  kill -"$sig" "$launcher"
  wait_for "$launcher" 60
  rc=$?
  check "a healthy 2-rank job stopped by SIG$sig exits $code through the launcher (got $rc)" "[ $rc -eq $code ]"
  check "SIG$sig: summary.json says interrupted and names the final checkpoint, which exists" \
    "grep -q '\"status\": \"interrupted\"' '$work/healthy_$sig/summary.json' &&
     [ -f \"\$(sed -n 's/.*\"checkpoint\": \"\(.*\)\".*/\1/p' '$work/healthy_$sig/summary.json')\" ]"
done
finish

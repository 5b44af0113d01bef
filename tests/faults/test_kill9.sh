#!/usr/bin/env bash
# kill -9 at random moments: a run with a checkpoint after every step, killed with SIGKILL again and
# again (each time 2 to 13 steps further on, 0-90 ms into a step) and continued with
# training.restart=latest, ends with the same loss at every step, bit for bit, as a run never
# interrupted; every restart continues from the newest checkpoint and removes the `.tmp` files a
# killed writer left (one is planted to be sure there is one). PDEGEN_KILL_SEED repeats a sequence
# of kills (the seed is printed).
#   PDEGEN=build/cpu/pdegen bash tests/faults/test_kill9.sh
set -u
PDEGEN="${PDEGEN:-build/cpu/pdegen}"
MPIEXEC="${PDEGEN_MPIEXEC:-mpiexec.mpich}"
here="$(cd "$(dirname "$0")" && pwd)"
deck="$here/../decks/tiny.yaml"
work="$(mktemp -d)"
pid=
trap 'if [ -n "$pid" ]; then kill -9 "$pid" 2>/dev/null; fi; rm -rf "$work"' EXIT

source "$here/../lib.sh"
require_pdegen
# Spinning OpenMP threads on a busy machine make the run many times slower (tools/test.sh sets this).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
# A few seconds of training (60 steps at 32^2), a checkpoint after each step.
args=(problem.resolution=32 training.steps=60 training.checkpoint_every=1)
seed="${PDEGEN_KILL_SEED:-$$}"
RANDOM=$seed
echo "kills from seed $seed (PDEGEN_KILL_SEED)"

"$PDEGEN" train "$deck" "${args[@]}" output.dir="$work/ref" >"$work/ref.log" 2>&1
rc=$?
check "the uninterrupted reference run exits 0 (got $rc)" "[ $rc -eq 0 ]"

run="$work/run" ckpts="$work/run/checkpoints"
# The step of the newest checkpoint (0 before the first); zero-padded names sort by step.
newest_step() {
  local f
  f=$(ls "$ckpts"/step_*.h5 2>/dev/null | tail -n 1)
  if [ -n "$f" ]; then echo $((10#$(basename "$f" .h5 | sed 's/step_//'))); else echo 0; fi
}
max_attempts=40 planted_at=2
attempts=0 killed=0 rc=-1
bad_exits="" bad_restarts="" left_over="" stale_seen=0 resumed=0
while [ "$attempts" -lt "$max_attempts" ]; do
  attempts=$((attempts + 1))
  log="$work/attempt$attempts.log"
  latest=$(ls "$ckpts"/step_*.h5 2>/dev/null | tail -n 1)
  step=$(newest_step)
  stale=$(find "$run" -maxdepth 2 -name '*.tmp' 2>/dev/null)  # left by the last kill
  if [ "$attempts" -eq "$planted_at" ]; then
    mkdir -p "$ckpts"
    touch "$ckpts/step_99999999.h5.tmp"
  fi
  "$PDEGEN" train "$deck" "${args[@]}" output.dir="$run" training.restart=latest >"$log" 2>&1 &
  pid=$!
  # Once the checkpoint of a step 2 to 13 steps on is there (or 60 s have passed), 0-90 ms more.
  target=$((step + 2 + RANDOM % 12))
  [ "$target" -le 60 ] || target=60
  for _ in $(seq 3000); do
    [ "$(newest_step)" -ge "$target" ] && break
    case "$(ps -o stat= -p "$pid" 2>/dev/null)" in "" | Z*) break ;; esac  # it ended
    sleep 0.02
  done
  sleep "0.0$((RANDOM % 10))"
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null  # (without bash's "Killed" line)
  rc=$?
  pid=
  # An attempt that got as far as training must have continued from the newest checkpoint and
  # removed what the killed one left.
  if grep -qE '\] step +[0-9]+/' "$log"; then
    if [ -n "$latest" ]; then
      if grep -qF "restarted from $latest at step $((10#$(basename "$latest" .h5 | sed 's/step_//')))" "$log"; then
        resumed=$((resumed + 1))
      else
        bad_restarts+=" $attempts"
      fi
    fi
    for f in $stale; do
      stale_seen=$((stale_seen + 1))
      grep -qF "removed '$f', left by a writer that was stopped" "$log" || left_over+=" $f(attempt $attempts)"
    done
  fi
  if [ "$rc" -eq 137 ]; then
    killed=$((killed + 1))
  elif [ "$rc" -eq 0 ]; then
    break
  else
    bad_exits+=" attempt $attempts: exit $rc;"
  fi
done
echo "$attempts attempts, $killed killed by SIGKILL; $stale_seen .tmp file(s) left by a kill found at restarts"

check "the interrupted run completes within $max_attempts attempts (last exit $rc)" "[ $rc -eq 0 ]"
check "it was killed at least twice on the way" "[ $killed -ge 2 ]"
check "every attempt either completed or was killed (none failed)" "[ -z '$bad_exits' ]"
check "every restart continued from the newest checkpoint ($resumed checked)" "[ -z '$bad_restarts' ] && [ $resumed -ge 1 ]"
check "the planted step_99999999.h5.tmp was removed at the next restart, which says so" \
  "grep -qF \"removed '$ckpts/step_99999999.h5.tmp', left by a writer that was stopped\" '$work/attempt$planted_at.log' &&
   [ ! -e '$ckpts/step_99999999.h5.tmp' ]"
check "every .tmp a killed writer left was removed by the next restart, and none is left" \
  "[ -z '$left_over' ] && [ -z \"\$(find '$run' -name '*.tmp')\" ]"
cut -d, -f1,3 "$work/ref/history.csv" >"$work/ref.loss"
cut -d, -f1,3 "$run/history.csv" >"$work/run.loss" 2>/dev/null
check "history.csv of the interrupted run has the reference run's loss at every step, bit for bit" \
  "[ \$(wc -l <'$work/ref.loss') -eq 61 ] && cmp -s '$work/ref.loss' '$work/run.loss'"
[ "$failed" -eq 0 ] || diff "$work/ref.loss" "$work/run.loss" | head -n 6
h5dump -m '%a' -d /parameters "$work/ref/checkpoints/step_00000060.h5" 2>&1 | sed 1d >"$work/ref.parameters"
h5dump -m '%a' -d /parameters "$ckpts/step_00000060.h5" 2>&1 | sed 1d >"$work/run.parameters"
check "the final checkpoint holds the reference run's parameters, bit for bit" \
  "grep -q 'DATA {' '$work/ref.parameters' && cmp -s '$work/ref.parameters' '$work/run.parameters'"
"$PDEGEN" predict "$deck" problem.resolution=32 --checkpoint "$ckpts/step_00000060.h5" \
  output.dir="$work/predict" >"$work/predict.log" 2>&1
rc=$?
check "the final checkpoint reads: predict exits 0 (got $rc) and writes predict.json" \
  "[ $rc -eq 0 ] && [ -f '$work/predict/predict.json' ]"
finish

#!/usr/bin/env bash
# A run that diverges stops before the update with exit 4, says so and names the last good
# checkpoint, whose parameters are all finite; summary.json says "diverged", no fields file is
# written. Two runs: (1) optimizer.lr=30 on the tiny deck with a checkpoint after every step: a few
# steps, then the loss or gradient is not finite (also on 2 ranks); (2) a sound run with
# checkpoints at steps 2 and 4, continued with optimizer.lr=1e6, which diverges at step 6 before
# its next checkpoint: a restart from the named checkpoint with a lower optimizer.lr (and
# training.allow_deck_changes) then trains to the end. (From the checkpoint of the step just before
# the divergence no learning rate helps: the next step's gradient, computed before any update, is
# the one that was not finite.)
#   PDEGEN=build/cpu/pdegen PDEGEN_MPIEXEC=mpiexec.mpich bash tests/faults/test_divergence.sh
set -u
PDEGEN="${PDEGEN:-build/cpu/pdegen}"
MPIEXEC="${PDEGEN_MPIEXEC:-mpiexec.mpich}"
here="$(cd "$(dirname "$0")" && pwd)"
deck="$here/../decks/tiny.yaml"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

source "$here/../lib.sh"
require_pdegen
said="training diverged (lower optimizer.lr, or enable optimizer.grad_clip); the last good checkpoint is"
# exits NAME WANT: NAME's run ($rc, $work/NAME.log) ended with WANT, else the log's last lines.
exits() {
  check "$1 exits $2 (got $rc)" "[ $rc -eq $2 ]"
  [ "$rc" -eq "$2" ] || tail -n 3 "$work/$1.log"
}
# The last good checkpoint a log names ("" if none).
named_checkpoint() { sed -n "s/.*$said \(.*\)$/\1/p" "$1" | head -n 1; }
# The fields file of a run directory, as a checksum ("none" when there is none).
fields_sum() { if [ -f "$1/fields.h5" ]; then sha256sum <"$1/fields.h5"; else echo none; fi; }
# diverged NAME RUN_DIR WHAT FIELDS: the checks on a diverged run, whose directory held fields.h5
# with checksum FIELDS before; sets $last to the checkpoint it names.
diverged() {
  local log="$work/$1.log" run=$2 what=$3 fields=$4 newest
  last=$(named_checkpoint "$log")
  newest=$(ls "$run"/checkpoints/step_*.h5 2>/dev/null | tail -n 1)
  echo "$what: the last good checkpoint is ${last:-not named}"
  check "$what: the message says the run diverged at a step and names the last good checkpoint" \
    "grep -qE '(the loss is|the gradient is not finite|is not finite|the update made the parameters non-finite).* at step [0-9]+: training diverged' '$log' &&
     grep -qF '$said $run/checkpoints/step_' '$log'"
  check "$what: the named checkpoint exists and is the newest: none is written after the divergence" \
    "[ -n '$last' ] && [ -f '$last' ] && [ '$last' = '$newest' ]"
  # The values' lines only: the first names the file, whose random path may spell "nan" or "inf".
  h5dump -d /parameters "$last" 2>&1 | sed 1d >"$work/$1.parameters"
  check "$what: its /parameters are all finite (h5dump shows no nan or inf)" \
    "grep -q 'DATA {' '$work/$1.parameters' && ! grep -qiE 'nan|inf' '$work/$1.parameters'"
  grep -iE -m 2 'nan|inf' "$work/$1.parameters"
  check "$what: summary.json says \"diverged\" and repeats the message" \
    "grep -qF '\"status\": \"diverged\"' '$run/summary.json' && grep -qF '$said $last' '$run/summary.json'"
  check "$what: no fields file is written and no .tmp left" \
    "[ \"\$(fields_sum '$run')\" = '$fields' ] && [ -z \"\$(find '$run' -name '*.tmp')\" ]"
}

# (1) optimizer.lr=30, a checkpoint after every step.
args=(training.steps=30 training.checkpoint_every=1 optimizer.lr=30)
"$PDEGEN" train "$deck" "${args[@]}" output.dir="$work/lr30" >"$work/lr30.log" 2>&1
rc=$?
exits lr30 4
diverged lr30 "$work/lr30" "lr=30" none
# Adam's second moment overflows to inf at step 2 while loss and gradient stay finite: that state,
# and the NaN parameters it gives a step later, never reach a checkpoint.
check "lr=30: a finite gradient with a non-finite optimizer state still counts as diverged, at step 2" \
  "grep -qF \"the optimizer state 'exp_avg_sq' is not finite at step 2\" '$work/lr30.log' &&
   [ \"\$(basename '$last')\" = step_00000001.h5 ]"

# Without checkpoints the NaN parameters of step 3's update are caught right after it.
"$PDEGEN" train "$deck" training.steps=30 optimizer.lr=30 output.dir="$work/nockpt" >"$work/nockpt.log" 2>&1
rc=$?
exits nockpt 4
check "lr=30 without checkpoints: the non-finite update of step 3 stops the run" \
  "grep -qF 'the update made the parameters non-finite at step 3: training diverged' '$work/nockpt.log' &&
   [ -z \"\$(ls '$work/nockpt/checkpoints')\" ]"

# 2 ranks: every rank stops at the same step, the launcher reports 4.
if command -v "$MPIEXEC" >/dev/null 2>&1; then
  OMP_NUM_THREADS=1 timeout 120 "$MPIEXEC" -n 2 "$PDEGEN" train "$deck" "${args[@]}" output.dir="$work/ranks2" \
    >"$work/ranks2.log" 2>&1
  rc=$?
  exits ranks2 4
  last2=$(named_checkpoint "$work/ranks2.log")
  check "on 2 ranks rank 0 names the last good checkpoint, which exists" \
    "grep -qF '[rank 0] the ' '$work/ranks2.log' && [ -n '$last2' ] && [ -f '$last2' ]"
  check "on 2 ranks summary.json says \"diverged\"" "grep -qF '\"status\": \"diverged\"' '$work/ranks2/summary.json'"
else
  echo "(the 2-rank run left out: no MPI launcher '$MPIEXEC')"
fi

# (2) Sound to step 4 (checkpoints 2 and 4), then optimizer.lr=1e6: step 5's update wrecks the
# network, step 6's loss is not finite, before the checkpoint of step 6.
run="$work/jump"
"$PDEGEN" train "$deck" training.steps=4 training.checkpoint_every=2 output.dir="$run" >"$work/sound.log" 2>&1
rc=$?
exits sound 0
fields=$(fields_sum "$run")
"$PDEGEN" train "$deck" training.steps=30 training.checkpoint_every=2 optimizer.lr=1e6 training.allow_deck_changes=true \
  training.restart=latest output.dir="$run" >"$work/jump.log" 2>&1
rc=$?
exits jump 4
diverged jump "$run" "lr=1e6 from step 4" "$fields"
check "lr=1e6 from step 4: the checkpoint named is the one of step 4" \
  "[ '$last' = '$run/checkpoints/step_00000004.h5' ]"
"$PDEGEN" train "$deck" training.steps=30 training.checkpoint_every=2 optimizer.lr=1e-4 training.allow_deck_changes=true \
  training.restart="$last" output.dir="$run" >"$work/lower_lr.log" 2>&1
rc=$?
exits lower_lr 0
check "the restart with a lower optimizer.lr says so and continues from the named checkpoint" \
  "grep -qF 'restart with a changed deck (training.allow_deck_changes): optimizer.lr is 0.001 in the checkpoint, 0.0001 in this run' '$work/lower_lr.log' &&
   grep -qF 'restarted from $last at step 4' '$work/lower_lr.log'"
check "it completes: summary.json \"completed\", the checkpoint of step 30 written" \
  "grep -qF '\"status\": \"completed\"' '$run/summary.json' && [ -f '$run/checkpoints/step_00000030.h5' ]"
finish

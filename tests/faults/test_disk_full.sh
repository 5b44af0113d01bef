#!/usr/bin/env bash
# A full disk: training, predict and solve end with exit 1 (never a crash: 139 was the old bug) and a
# message that names the reason and, for training, the last good checkpoint; no `.tmp` is left, and
# the checkpoints written before the disk filled still read. The disk is a 4 MiB tmpfs filled with
# dd where this shell may mount one (root), else the files are capped with `ulimit -f` (writes past
# the cap fail with "File too large"); PDEGEN_DISK_FULL=ulimit forces the cap.
#   PDEGEN=build/cpu/pdegen PDEGEN_MPIEXEC=mpiexec.mpich bash tests/faults/test_disk_full.sh
set -u
PDEGEN="${PDEGEN:-build/cpu/pdegen}"
MPIEXEC="${PDEGEN_MPIEXEC:-mpiexec.mpich}"
here="$(cd "$(dirname "$0")" && pwd)"
deck="$here/../decks/tiny.yaml"
work="$(mktemp -d)"
disk="$work/disk"
mounted=0
trap 'if [ "$mounted" = 1 ]; then umount "$disk"; fi; rm -rf "$work"' EXIT

source "$here/../lib.sh"
require_pdegen
mkdir -p "$disk"
if [ "${PDEGEN_DISK_FULL:-tmpfs}" != ulimit ] && mount -t tmpfs -o size=4M tmpfs "$disk" 2>/dev/null; then
  mounted=1
  method=tmpfs reason="No space left on device"
  echo "disk full: a 4 MiB tmpfs at $disk, filled with dd"
else
  # 24 KiB: the logs, the deck and history.csv fit, a 35 KB checkpoint and the fields files do not.
  method=ulimit reason="File too large" cap_kib=24
  echo "disk full: files capped at $cap_kib KiB with ulimit -f (no tmpfs mount here)"
fi

# fill: fills the disk until dd fails (nothing to do under the cap).
fill() {
  [ "$method" = tmpfs ] || return 0
  dd if=/dev/zero of="$disk/fill" bs=64k 2>/dev/null
  [ "$(df --output=avail "$disk" | tail -n 1)" -eq 0 ] || echo "warning: the tmpfs is not full"
}
unfill() { rm -f "$disk/fill"; }
# full LOG CMD...: CMD on the full disk, its output in LOG, its exit status in $rc. Under the cap,
# UCX's POSIX shared memory (a file) is left out: it outgrows the cap before MPI is up.
full() {
  local log=$1
  shift
  if [ "$method" = tmpfs ]; then
    "$@" >"$log" 2>&1
  else
    (
      trap '' XFSZ
      ulimit -f "$cap_kib"
      export UCX_TLS='^posix'
      exec "$@"
    ) >"$log" 2>&1
  fi
  rc=$?
}
# exits NAME WANT: NAME's run ($rc, $work/NAME.log) ended with WANT, else the log's last lines.
exits() {
  check "$1 exits $2 (got $rc)" "[ $rc -eq $2 ]"
  [ "$rc" -eq "$2" ] || tail -n 3 "$work/$1.log"
}
no_tmp() { [ -z "$(find "$disk" -name '*.tmp' 2>/dev/null)" ]; }

# (a) A run that fits, then a disk that fills up before its next checkpoint.
run="$disk/run" ckpts="$disk/run/checkpoints"
"$PDEGEN" train "$deck" training.checkpoint_every=2 output.dir="$run" >"$work/first.log" 2>&1
rc=$?
exits first 0
check "the first run leaves checkpoints 2, 4 and 6" \
  "[ -f $ckpts/step_00000002.h5 ] && [ -f $ckpts/step_00000004.h5 ] && [ -f $ckpts/step_00000006.h5 ]"
(cd "$ckpts" && sha256sum step_*.h5) >"$work/checkpoints.sha256"
cp "$run/deck.resolved.yaml" "$work/deck.before"

if [ "$method" = tmpfs ]; then
  # Not one byte free: the restart cannot even record its deck.
  dd if=/dev/zero of="$disk/reserve" bs=1k count=24 2>/dev/null  # set aside for (a2)
  fill
  full "$work/nothing_free.log" "$PDEGEN" train "$deck" training.checkpoint_every=2 output.dir="$run" \
    training.restart=latest training.steps=10
  exits nothing_free 1
  check "with no byte free the restart says the disk is full" \
    "grep -qF 'No space left on device' '$work/nothing_free.log'"
  check "with no byte free: no crash report, no .tmp left, the deck and checkpoints as they were" \
    "! grep -qiE 'unexpected error|segmentation' '$work/nothing_free.log' && no_tmp &&
     cmp -s '$work/deck.before' '$run/deck.resolved.yaml' &&
     (cd '$ckpts' && sha256sum --quiet -c '$work/checkpoints.sha256')"
  rm -f "$disk/reserve"  # the run's deck, log and history fit in these 24 KiB, its next checkpoint does not
fi

# (a2) The restart trains steps 7 and 8, then cannot write the checkpoint of step 8.
full "$work/filled.log" "$PDEGEN" train "$deck" training.checkpoint_every=2 output.dir="$run" \
  training.restart=latest training.steps=10
exits filled 1
msg="the checkpoint of step 8 could not be written: cannot write '$ckpts/step_00000008.h5.tmp': $reason. The last good checkpoint is $ckpts/step_00000006.h5; free space and restart with training.restart=latest"
check "the message says the checkpoint could not be written, why, and names the last good one" \
  "grep -qF \"\$msg\" '$work/filled.log'"
check "no .tmp is left anywhere on the disk, and no checkpoint of step 8" \
  "no_tmp && [ ! -e $ckpts/step_00000008.h5 ]"
check "summary.json says the run failed and names the last good checkpoint" \
  "grep -qF '\"status\": \"failed\"' '$run/summary.json' &&
   grep -qF '\"checkpoint\": \"$ckpts/step_00000006.h5\"' '$run/summary.json'"
check "the checkpoints written before the disk filled are there, unchanged" \
  "(cd '$ckpts' && sha256sum --quiet -c '$work/checkpoints.sha256')"

# Space freed: the last good checkpoint predicts, and training.restart=latest finishes the run.
unfill
"$PDEGEN" predict "$deck" --checkpoint "$ckpts/step_00000006.h5" output.dir="$work/predict_ok" \
  >"$work/predict_ok.log" 2>&1
rc=$?
exits predict_ok 0
check "the last good checkpoint predicts once space is free" "[ -f '$work/predict_ok/predict.json' ]"
"$PDEGEN" train "$deck" training.checkpoint_every=2 output.dir="$run" training.restart=latest \
  training.steps=10 >"$work/resumed.log" 2>&1
rc=$?
exits resumed 0
check "with space freed the restart continues from step 6 and completes" \
  "grep -qF 'restarted from $ckpts/step_00000006.h5 at step 6' '$work/resumed.log' &&
   [ -f $ckpts/step_00000010.h5 ] && grep -qF '\"status\": \"completed\"' '$run/summary.json'"

# (b) predict and (c) solve into the full disk: 16 samples make files past the 24 KiB cap.
fill
full "$work/predict.log" "$PDEGEN" predict "$deck" --checkpoint "$ckpts/step_00000010.h5" \
  evaluation.samples=16 output.dir="$disk/predict"
exits predict 1
check "predict says it cannot write predict.h5, and why" \
  "grep -qF \"cannot write '$disk/predict/predict.h5': \" '$work/predict.log' &&
   grep -qF '$reason' '$work/predict.log'"
check "predict leaves no .tmp, no predict.h5 and no predict.json, and does not crash" \
  "no_tmp && [ ! -e '$disk/predict/predict.h5' ] && [ ! -e '$disk/predict/predict.json' ] &&
   ! grep -q 'unexpected error' '$work/predict.log'"

full "$work/solve.log" "$PDEGEN" solve "$deck" evaluation.samples=16 output.dir="$disk/solve"
exits solve 1
check "solve says it cannot write reference.h5, and why" \
  "grep -qF \"cannot write '$disk/solve/reference.h5': \" '$work/solve.log' && grep -qF '$reason' '$work/solve.log'"
check "solve leaves no .tmp, no reference.h5 and no solve.json, and does not crash" \
  "no_tmp && [ ! -e '$disk/solve/reference.h5' ] && [ ! -e '$disk/solve/solve.json' ] &&
   ! grep -q 'unexpected error' '$work/solve.log'"

if command -v "$MPIEXEC" >/dev/null 2>&1; then
  full "$work/solve2.log" env OMP_NUM_THREADS=1 timeout 120 "$MPIEXEC" -n 2 "$PDEGEN" solve "$deck" \
    evaluation.samples=16 output.dir="$disk/solve2"
  check "solve on 2 ranks ends, not hanging in a collective write (timeout 120 s: exit 124)" "[ $rc -ne 124 ]"
  exits solve2 1
  check "solve on 2 ranks says it cannot write reference.h5, and why" \
    "grep -qF \"cannot write '$disk/solve2/reference.h5': \" '$work/solve2.log' &&
     grep -qF '$reason' '$work/solve2.log'"
  check "solve on 2 ranks leaves no .tmp and no reference.h5" "no_tmp && [ ! -e '$disk/solve2/reference.h5' ]"
else
  echo "(solve on 2 ranks left out: no MPI launcher '$MPIEXEC')"
fi
finish

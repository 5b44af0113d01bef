#!/usr/bin/env bash
# Damaged and foreign checkpoints: one flipped byte (in the stored deck) or a truncated file is
# "damaged" (its CRC-32 or length does not match its header); a file that is not HDF5, or HDF5 that
# is not a checkpoint (a fields.h5), is named as such; all exit 2 for restart and predict and change
# nothing. A checkpoint of another configuration: a restart with another optimizer.lr is refused
# unless training.allow_deck_changes (then a warning), another training.steps is accepted silently,
# another training.batch_size with allow_deck_changes trains on; predict refuses another network
# and warns about another problem.
#   PDEGEN=build/cpu/pdegen bash tests/faults/test_checkpoint_integrity.sh
set -u
PDEGEN="${PDEGEN:-build/cpu/pdegen}"
MPIEXEC="${PDEGEN_MPIEXEC:-mpiexec.mpich}"
PYTHON="${PYTHON:-/usr/bin/python3}"
here="$(cd "$(dirname "$0")" && pwd)"
deck="$here/../decks/tiny.yaml"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

source "$here/../lib.sh"
require_pdegen
command -v "$PYTHON" >/dev/null 2>&1 || skip "no python at $PYTHON (it flips the byte; set PYTHON)"
# run NAME VERB ARGS...: `pdegen VERB DECK ARGS` (output.dir $work/NAME unless given), output in
# $work/NAME.log, exit status in $rc.
run() {
  local name=$1 verb=$2
  shift 2
  "$PDEGEN" "$verb" "$deck" output.dir="$work/$name" "$@" >"$work/$name.log" 2>&1
  rc=$?
}
# exits NAME WANT: NAME's run ended with WANT, else the log's last lines.
exits() {
  check "$1 exits $2 (got $rc)" "[ $rc -eq $2 ]"
  [ "$rc" -eq "$2" ] || tail -n 3 "$work/$1.log"
}
# said NAME TEXT: NAME's log holds TEXT.
said() { grep -qF -- "$2" "$work/$1.log"; }
# untouched DIR: a restart refused in DIR left no deck, history or checkpoint there.
untouched() { [ ! -e "$1/deck.resolved.yaml" ] && [ ! -e "$1/history.csv" ] && [ -z "$(ls "$1"/checkpoints 2>/dev/null)" ]; }

run base train training.checkpoint_every=2
exits base 0
ckpts="$work/base/checkpoints" ck="$work/base/checkpoints/step_00000006.h5"
check "the base run leaves checkpoints 2, 4 and 6" "[ -f $ckpts/step_00000002.h5 ] && [ -f $ckpts/step_00000004.h5 ] && [ -f $ck ]"

# (a) One byte of the deck stored in the newest checkpoint of a copy of the run: weight_decay 0.0 -> 0.1.
cp -r "$work/base" "$work/flip"
flipped="$work/flip/checkpoints/step_00000006.h5"
"$PYTHON" - "$flipped" <<'EOF'
import sys
path = sys.argv[1]
data = bytearray(open(path, "rb").read())
at = data.find(b"weight_decay: 0.0")
assert at > 512, "no stored deck after the 512-byte header"
data[at + len("weight_decay: 0.")] = ord("1")
open(path, "wb").write(data)
EOF
check "the byte is flipped (the file differs from the original in one byte)" \
  "[ \$(cmp -l '$ck' '$flipped' | wc -l) -eq 1 ]"
sha256sum "$work/flip/checkpoints"/* "$work/flip/deck.resolved.yaml" "$work/flip/history.csv" >"$work/flip.sha256"
damaged="checkpoint '$flipped' is damaged: its CRC-32 does not match its contents; use an earlier checkpoint"
run flip train training.checkpoint_every=2 training.restart=latest training.steps=8
exits flip 2
check "a restart from it says it is damaged (CRC-32)" "said flip \"\$damaged\""
check "the refused restart changes nothing: checkpoints, deck and history as they were, no step 8" \
  "sha256sum --quiet -c '$work/flip.sha256' && [ ! -e '$work/flip/checkpoints/step_00000008.h5' ]"
run flip_predict predict --checkpoint "$flipped"
exits flip_predict 2
check "predict from it says it is damaged (CRC-32) and writes nothing" \
  "said flip_predict \"\$damaged\" && [ ! -e '$work/flip_predict/predict.h5' ]"
# As the message says: an earlier checkpoint works (the damaged one is set aside).
run flip train training.checkpoint_every=2 training.restart="$work/flip/checkpoints/step_00000004.h5" training.steps=8
exits flip 0
check "the earlier checkpoint restarts the run to the end" \
  "said flip 'restarted from $work/flip/checkpoints/step_00000004.h5 at step 4' && [ -f '$work/flip/checkpoints/step_00000008.h5' ]"

# (b) Truncated: the first 20000 bytes.
mkdir -p "$work/cut"
truncated="$work/cut/step_00000006.h5"
head -c 20000 "$ck" >"$truncated"
short="checkpoint '$truncated' is damaged: it holds 19488 bytes after its header, its header says $(($(stat -c %s "$ck") - 512)); use an earlier checkpoint"
run cut_restart train training.restart="$truncated" training.steps=8
exits cut_restart 2
check "a restart from a truncated checkpoint says it is damaged and how short it is" "said cut_restart \"\$short\""
check "the refused restart leaves no deck, history or checkpoint in its directory" "untouched '$work/cut_restart'"
run cut_predict predict --checkpoint "$truncated"
exits cut_predict 2
check "predict from a truncated checkpoint says it is damaged and writes nothing" \
  "said cut_predict \"\$short\" && [ ! -e '$work/cut_predict/predict.h5' ]"

# (c) Not HDF5 at all, and HDF5 that is no checkpoint (the run's fields.h5).
printf 'not a checkpoint\n' >"$work/text.h5"
not_hdf5="cannot read checkpoint '$work/text.h5': the file is truncated, damaged or not a pdegen checkpoint"
not_ckpt="'$work/base/fields.h5' is an HDF5 file but not a pdegen checkpoint (no format_version)"
run text_restart train training.restart="$work/text.h5"
exits text_restart 2
check "a restart from a text file says it is not a checkpoint (not HDF5)" \
  "said text_restart \"\$not_hdf5\" && said text_restart 'Not an HDF5 file' && untouched '$work/text_restart'"
run text_predict predict --checkpoint "$work/text.h5"
exits text_predict 2
check "predict from a text file says it is not a checkpoint" \
  "said text_predict \"\$not_hdf5\" && [ ! -e '$work/text_predict/predict.h5' ]"
run fields_restart train training.restart="$work/base/fields.h5"
exits fields_restart 2
check "a restart from fields.h5 says it is HDF5 but no checkpoint" \
  "said fields_restart \"\$not_ckpt\" && untouched '$work/fields_restart'"
run fields_predict predict --checkpoint "$work/base/fields.h5"
exits fields_predict 2
check "predict from fields.h5 says it is HDF5 but no checkpoint" \
  "said fields_predict \"\$not_ckpt\" && [ ! -e '$work/fields_predict/predict.h5' ]"
check "none of them is an unexpected error" "! grep -l 'unexpected error' '$work'/*.log"

# (d) Another configuration: optimizer.lr 0.01 for the checkpoint's 0.001, in a copy of the run.
cp -r "$work/base" "$work/lr"
sha256sum "$work/lr/deck.resolved.yaml" "$work/lr/history.csv" >"$work/lr.sha256"
other="checkpoint '$work/lr/checkpoints/step_00000006.h5' was written by a run with another configuration: optimizer.lr is 0.001 in the checkpoint, 0.01 in this run. Restart with the deck that made it, or set training.allow_deck_changes=true"
run lr train training.checkpoint_every=2 training.restart=latest training.steps=8 optimizer.lr=0.01
exits lr 2
check "a restart with another optimizer.lr is refused, naming the key and both values" "said lr \"\$other\""
check "the refused restart leaves the run as it was (its deck and history; no step 8)" \
  "sha256sum --quiet -c '$work/lr.sha256' && [ ! -e '$work/lr/checkpoints/step_00000008.h5' ]"
run lr train training.checkpoint_every=2 training.restart=latest training.steps=8 optimizer.lr=0.01 \
  training.allow_deck_changes=true
exits lr 0
check "with training.allow_deck_changes=true it trains on, with a warning naming the change" \
  "said lr 'restart with a changed deck (training.allow_deck_changes): optimizer.lr is 0.001 in the checkpoint, 0.01 in this run' &&
   said lr 'restarted from $work/lr/checkpoints/step_00000006.h5 at step 6' && [ -f '$work/lr/checkpoints/step_00000008.h5' ]"
check "the run's deck is now the changed one" "grep -qE '^  lr: 0\\.01\$' '$work/lr/deck.resolved.yaml'"
run steps train training.restart="$ck" training.steps=8
exits steps 0
check "another training.steps is accepted silently (no warning, no refusal) and trains to step 8" \
  "said steps 'restarted from $ck at step 6' && ! said steps 'changed deck' && ! said steps 'another configuration' &&
   ! grep -q '\\[warning\\]' '$work/steps.log' && [ -f '$work/steps/checkpoints/step_00000008.h5' ]"

# (e) predict with another network, or another problem.
run tanh predict --checkpoint "$ck" network.activation=tanh
exits tanh 2
check "predict with network.activation=tanh says the checkpoint holds another network, and writes nothing" \
  "said tanh \"checkpoint '$ck' holds another network: network.activation is relu in the checkpoint, tanh in this deck\" &&
   [ ! -e '$work/tanh/predict.h5' ]"
run sigma predict --checkpoint "$ck" problem.sigma=2
exits sigma 0
check "predict with problem.sigma=2 warns that it predicts outside the training distribution" \
  "said sigma 'predicting outside the training distribution: problem.sigma is 1.0 in training, 2.0 in this prediction'"
check "and writes its results" \
  "[ -f '$work/sigma/predict.h5' ] && grep -qF '\"status\": \"completed\"' '$work/sigma/predict.json'"
run same predict --checkpoint "$ck"
exits same 0
check "predict with the training deck warns of nothing and writes its results" \
  "! grep -q '\\[warning\\]' '$work/same.log' && [ -f '$work/same/predict.json' ]"

# (f) Another training.batch_size (allowed): the sample stream goes on from the checkpoint's next_sample.
run batch train training.restart="$ck" training.steps=8 training.batch_size=8 training.allow_deck_changes=true
exits batch 0
check "a restart with training.batch_size=8 and allow_deck_changes warns and trains to step 8" \
  "said batch 'restart with a changed deck (training.allow_deck_changes): training.batch_size is 4 in the checkpoint, 8 in this run' &&
   [ -f '$work/batch/checkpoints/step_00000008.h5' ] && grep -qF '\"status\": \"completed\"' '$work/batch/summary.json'"
finish

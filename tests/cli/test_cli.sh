#!/usr/bin/env bash
# The pdegen command line end to end: every deck in input_decks/ passes `pdegen check`; a misspelled
# key (in a deck or an override) exits 2 with the line and the suggested key; --version lists the
# backends; --help works.
# Run from the repository root: PDEGEN=/path/to/pdegen bash tests/cli/test_cli.sh
set -u

PDEGEN=${PDEGEN:?set PDEGEN to the pdegen executable}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0

pass() { echo "PASS  $1"; passed=$((passed + 1)); }
fail() {
  echo "FAIL  $1: $2"
  sed 's/^/      | /' "$work/out" "$work/err" | head -20
  failed=$((failed + 1))
}
run() { "$PDEGEN" "$@" >"$work/out" 2>"$work/err"; rc=$?; }
# expect NAME RC [PATTERN ...]: exit code RC and every fixed-string PATTERN in stdout+stderr.
expect() {
  local name=$1 want=$2
  shift 2
  if [ "$rc" -ne "$want" ]; then
    fail "$name" "exit code $rc, expected $want"
    return
  fi
  for pattern in "$@"; do
    if ! cat "$work/out" "$work/err" | grep -qF -- "$pattern"; then
      fail "$name" "output lacks '$pattern'"
      return
    fi
  done
  pass "$name"
}

# -- every shipped deck is valid -------------------------------------------------------------
for deck in input_decks/*.yaml; do
  run check "$deck"
  expect "check accepts $deck" 0 "problem:" "parameters:" "FLOPs per sample, forward:" \
    "FLOPs per training step:" "peak activation memory per step:"
done
run check input_decks/quickstart.yaml --verbose
expect "check --verbose prints the layer table" 0 "enc0.conv0" "dec0.concat" "head"
run check input_decks/quickstart.yaml
expect "check prints the network's receptive field (depth 4, two 3x3 convolutions per level)" 0 \
  "receptive field:                 +-51 nodes per axis"

# The resolved deck that check prints is itself a deck that check accepts, unchanged.
run check input_decks/quickstart.yaml training.steps=77
cp "$work/out" "$work/resolved.yaml"
run check "$work/resolved.yaml"
if [ "$rc" -eq 0 ] && grep -qF "steps: 77" "$work/out" &&
  diff <(grep -v '^#' "$work/resolved.yaml") <(grep -v '^#' "$work/out") >/dev/null; then
  pass "check's output reads back as the same resolved deck"
else
  fail "check's output reads back as the same resolved deck" "rc $rc or resolved decks differ"
fi

# -- typos are refused with the line and the suggestion ------------------------------------------
cat >"$work/typo.yaml" <<'EOF'
problem:
  pde: poisson2d
  resolution: 64
network:
  depth: 4
  base_chanels: 16
EOF
run check "$work/typo.yaml"
expect "a misspelled deck key exits 2 with line, column and suggestion" 2 \
  "$work/typo.yaml:6:3: error: unknown key 'network.base_chanels'; did you mean 'network.base_channels'?"
run train "$work/typo.yaml"
expect "train refuses the same deck before anything else" 2 "did you mean 'network.base_channels'?"

run check input_decks/quickstart.yaml training.stpes=10
expect "a misspelled override exits 2 naming the override and the suggestion" 2 \
  "override 'training.stpes=10': error: unknown key 'training.stpes'; did you mean 'training.steps'?"

run check input_decks/quickstart.yaml training.steps=ten
expect "an override of the wrong type exits 2" 2 \
  "override 'training.steps=ten': error: 'training.steps' expects a non-negative integer, got 'ten'"

run check input_decks/quickstart.yaml problem.resolution=65
expect "a grid the U-Net cannot halve exits 2 naming resolution and depth" 2 "problem.resolution = 65" \
  "network.depth"

run check "$work/missing.yaml"
expect "a missing deck file exits 2" 2 "no such deck file"

# -- what would fail in train is found by check ---------------------------------------------------
run check input_decks/quickstart.yaml
if grep -qF "estimated memory per process:" "$work/out" && ! grep -q "WARNING" "$work/out" "$work/err"; then
  pass "check estimates the memory of a step and does not warn for a deck that fits"
else
  fail "check estimates the memory of a step and does not warn for a deck that fits" "no estimate, or a warning"
fi
run check input_decks/quickstart.yaml problem.resolution=1000000
expect "a step larger than any machine's memory is a warning (exit 0) naming the keys that size it" 0 \
  "WARNING: a training step of this deck needs about" "problem.resolution^2 (now 1000000)" \
  "training.batch_size (16)" "network.base_channels (16)" \
  "Even one sample per process needs" "splitting the batch cannot help"
if grep -q "^WARNING: a training step" "$work/err" && grep -q "^# WARNING: a training step" "$work/out" &&
  grep -qF "(but see the WARNING at the end)" "$work/out"; then
  pass "the memory warning goes to stderr and, as a comment, into the resolved deck"
else
  fail "the memory warning goes to stderr and, as a comment, into the resolved deck" "missing in one of them"
fi
run check input_decks/quickstart.yaml problem.resolution=256 training.batch_size=1048576
expect "a batch too large for one process says over how many ranks to split it" 0 \
  "WARNING: a training step of this deck needs about" "training.batch_size (1048576)" \
  "To fit, split the batch over at least" "ranks with this much memory each"

run check input_decks/quickstart.yaml training.restart="$work/nonexistent.h5"
expect "check refuses a restart file that does not exist, naming the key and the file" 2 \
  "error: 'training.restart' names no usable checkpoint: checkpoint '$work/nonexistent.h5' does not exist"
echo "not a checkpoint" >"$work/text.h5"
run check input_decks/quickstart.yaml training.restart="$work/text.h5"
expect "check refuses a restart file that is not a checkpoint, naming the key and the file" 2 \
  "error: 'training.restart' names no usable checkpoint: cannot read checkpoint '$work/text.h5'" \
  "not a pdegen checkpoint"
"$PDEGEN" train tests/decks/tiny.yaml training.steps=1 output.dir="$work/tiny" >/dev/null 2>&1
run check tests/decks/tiny.yaml training.restart="$work/tiny/checkpoints/step_00000001.h5"
expect "check accepts a restart file that is a checkpoint" 0 "restart: $work/tiny/checkpoints/step_00000001.h5"
run check input_decks/quickstart.yaml training.restart=latest
expect "check accepts training.restart latest without a checkpoint to look at" 0 "restart: latest"

run check input_decks/quickstart.yaml problem.kl_modes=100000
expect "more KL modes than grid nodes exits 2 naming the key, the value and the limit" 2 \
  "'problem.kl_modes' (100000) must not exceed the 4096 nodes of the 64^2 grid (problem.resolution)"
run train input_decks/quickstart.yaml problem.kl_modes=100000 output.dir="$work/kl"
expect "train refuses it too, before allocating anything" 2 "'problem.kl_modes' (100000) must not exceed"

# -- verbs, options, help and version --------------------------------------------------------------
run --version
expect "--version lists version, backends, MPI and HDF5" 0 "pdegen 0.1.0" "backends:" "cpu (oneDNN " \
  "OpenMP" "cuda" "MPI: " "HDF5: "

run check input_decks/burgers1d_128.yaml problem.loss=least_squares
expect "the least-squares Burgers loss with viscosity exits 2 naming the key and why" 2 \
  "'problem.loss' is 'least_squares', which needs problem.viscosity 0 (got 0.01)"
run predict input_decks/quickstart.yaml --checkpoint "$work/none.h5"
expect "predict names a missing checkpoint" 2 "none.h5"
run train input_decks/quickstart.yaml --restart "$work/step_10.h5" output.dir="$work/run"
expect "train --restart names a missing checkpoint" 2 "step_10.h5"

run --help
expect "--help shows usage and the verbs" 0 "usage: pdegen VERB DECK" "train" "predict" "solve" "check"
run check --help
expect "check --help shows the verb's usage" 0 "usage: pdegen check DECK"
run help train
expect "help train shows the verb's usage" 0 "usage: pdegen train DECK"

run
expect "no arguments is a usage error" 2 "missing verb"
run trian input_decks/quickstart.yaml
expect "an unknown verb is a usage error with a suggestion" 2 "unknown verb 'trian'" "did you mean 'train'?"
run check
expect "a verb without a deck is a usage error" 2 "needs a DECK"
run check input_decks/quickstart.yaml --frobnicate
expect "an unknown option is a usage error" 2 "unknown option '--frobnicate'"
run check input_decks/quickstart.yaml stray
expect "a stray argument is a usage error" 2 "unexpected argument 'stray'"
run predict input_decks/quickstart.yaml
expect "predict without --checkpoint is a usage error" 2 "needs --checkpoint FILE"
run check input_decks/quickstart.yaml --restart x.h5
expect "an option of another verb is a usage error" 2 "--restart is an option of 'pdegen train'"
run predict --help
expect "predict --help shows the tiling options" 0 "--tile N" "--halo auto|N" "--tile-batch N" "--no-reference"
run predict input_decks/quickstart.yaml --checkpoint x.h5 --tile 3x
expect "a bad --tile is a usage error" 2 "--tile '3x' is not a whole number >= 0"
run predict input_decks/quickstart.yaml --checkpoint x.h5 --tile 64 --halo -8
expect "a bad --halo is a usage error" 2 "--halo (auto or a count) '-8' is not a whole number >= 0"
run predict input_decks/quickstart.yaml --checkpoint x.h5 --tile 64 --tile-batch 0
expect "a bad --tile-batch is a usage error" 2 "--tile-batch '0' is not a whole number >= 1"
run predict input_decks/quickstart.yaml --checkpoint x.h5 --halo 8
expect "--halo without --tile is a usage error" 2 "--halo sets up tiled prediction and needs --tile N"
run train input_decks/quickstart.yaml --tile 64
expect "--tile is an option of predict only" 2 "--tile is an option of 'pdegen predict'"
run check input_decks/quickstart.yaml --log-level loud
expect "a bad --log-level is a usage error" 2 "--log-level 'loud' is not a level"
run check input_decks/quickstart.yaml --log-level=warn --log-all-ranks
expect "--log-level and --log-all-ranks are accepted" 0 "parameters:"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

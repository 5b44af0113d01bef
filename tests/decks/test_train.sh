#!/usr/bin/env bash
# End to end on a tiny deck: train writes every output; N steps + restart + N steps equals 2N steps
# bit for bit; predict and solve work from what train wrote; SIGTERM stops cleanly with a final
# checkpoint; a diverging run stops with exit 4 and status "diverged".
#   PDEGEN=build/cpu/pdegen bash tests/decks/test_train.sh   (from the repository root)
set -u
PDEGEN="${PDEGEN:-build/cpu/pdegen}"
deck=tests/decks/tiny.yaml
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
source "$here/../lib.sh"
require_pdegen
# types FILE KIND: every field of a JSON output parsed and its type checked (check_json_types.py).
types() { /usr/bin/python3 "$here/check_json_types.py" "$2" "$1"; }
json() { /usr/bin/python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

"$PDEGEN" train "$deck" output.dir="$work/full" >"$work/full.log" 2>&1
check "train exits 0" "[ $? -eq 0 ]"
for f in summary.json history.csv deck.resolved.yaml pdegen.log fields.h5 fields.xdmf checkpoints/step_00000006.h5; do
  check "train writes $f" "[ -s '$work/full/$f' ]"
done
check "no temporary file is left behind" "[ -z \"\$(find '$work/full' -name '*.tmp')\" ]"
check "summary says completed after 6 steps" "[ \"\$(json '$work/full/summary.json' 'd[\"status\"], d[\"steps\"]')\" = \"('completed', 6)\" ]"
check "summary.json parses and every field has its type" "types '$work/full/summary.json' summary"
check "summary has rel_l2 mean and max" "json '$work/full/summary.json' 'd[\"eval\"][\"rel_l2_mean\"] > 0 and d[\"eval\"][\"rel_l2_max\"] >= d[\"eval\"][\"rel_l2_mean\"]' | grep -q True"
check "history has one row per step" "[ \$(wc -l < '$work/full/history.csv') -eq 7 ]"
check "the progress line reports loss, lr, rel_l2, samples/s, GFLOP/s and ETA" \
  "grep -E 'step 6/6 \\| loss [0-9.e+-]+ \\| lr [0-9.e+-]+ \\| rel_l2 [0-9.]+% .* samples/s \\| .* GFLOP/s \\| ETA' '$work/full.log' >/dev/null"

# 3 steps, then the same deck with 6 steps continuing from the latest checkpoint.
"$PDEGEN" train "$deck" output.dir="$work/split" training.steps=3 >"$work/split1.log" 2>&1
check "first half exits 0" "[ $? -eq 0 ]"
"$PDEGEN" train "$deck" output.dir="$work/split" training.restart=latest >"$work/split2.log" 2>&1
check "second half restarts from the latest checkpoint" "[ $? -eq 0 ] && grep -q 'restarted from .*step_00000003.h5 at step 3' '$work/split2.log'"
check "3 + restart + 3 steps give bit-identical parameters to 6 steps" \
  "h5diff -d 0 '$work/full/checkpoints/step_00000006.h5' '$work/split/checkpoints/step_00000006.h5' /parameters /parameters >/dev/null"
check "... and bit-identical optimizer state" \
  "h5diff '$work/full/checkpoints/step_00000006.h5' '$work/split/checkpoints/step_00000006.h5' /optimizer_state /optimizer_state >/dev/null"
check "... and the same loss history" "diff <(cut -d, -f1,3,4,5 '$work/full/history.csv') <(cut -d, -f1,3,4,5 '$work/split/history.csv') >/dev/null"
"$PDEGEN" train "$deck" output.dir="$work/split" training.restart=latest >"$work/split3.log" 2>&1
check "a restart at the final step runs nothing and keeps the last step's loss in summary.json" \
  "[ $? -eq 0 ] && json '$work/split/summary.json' 'd[\"start_step\"], d[\"steps\"], abs(d[\"final_loss\"] - float(open(\"$work/full/history.csv\").read().split()[-1].split(\",\")[2])) < 1e-6 * d[\"final_loss\"]' | grep -qx '(6, 6, True)'"

# A restart the checkpoint rejects (another network) leaves the run directory's deck as it was.
cp "$work/split/deck.resolved.yaml" "$work/deck.before"
"$PDEGEN" train "$deck" output.dir="$work/split" training.restart=latest network.base_channels=32 >"$work/rejected.log" 2>&1
check "a rejected restart exits 2 and leaves deck.resolved.yaml unchanged" \
  "[ $? -eq 2 ] && cmp -s '$work/deck.before' '$work/split/deck.resolved.yaml'"

# The same for L-BFGS, whose state (history pairs, Gram matrix, line-search scalars) must restart
# exactly too, and for an Adam -> L-BFGS switch that happens after the restart.
restart_check() {  # LABEL OVERRIDES...
  local label=$1
  shift
  "$PDEGEN" train "$deck" output.dir="$work/opt_full" output.fields=false "$@" >"$work/opt_full.log" 2>&1 &&
    "$PDEGEN" train "$deck" output.dir="$work/opt_split" output.fields=false training.steps=3 "$@" >/dev/null 2>&1 &&
    "$PDEGEN" train "$deck" output.dir="$work/opt_split" output.fields=false training.restart=latest "$@" >/dev/null 2>&1
  check "$label: 3 + restart + 3 steps give bit-identical parameters and optimizer state" \
    "h5diff -d 0 '$work/opt_full/checkpoints/step_00000006.h5' '$work/opt_split/checkpoints/step_00000006.h5' /parameters /parameters >/dev/null && h5diff '$work/opt_full/checkpoints/step_00000006.h5' '$work/opt_split/checkpoints/step_00000006.h5' /optimizer_state /optimizer_state >/dev/null"
  rm -rf "$work/opt_full" "$work/opt_split"
}
restart_check "L-BFGS" optimizer.type=lbfgs optimizer.lr=1 optimizer.max_iterations=3
restart_check "Adam, then L-BFGS from step 5" "optimizer.then={after_steps: 4, type: lbfgs, lr: 1, max_iterations: 3}"

# bf16 activations on the CPU (AVX512-BF16 or AMX): the same exact restart; without the instructions
# (oneDNN told to stop below them) a clear refusal naming the key.
if grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo; then
  restart_check "precision bf16 on the CPU" precision=bf16
  restart_check "bf16, then fp32 after step 4" precision=bf16 training.fp32_after_step=4
  "$PDEGEN" train "$deck" output.dir="$work/bf16_fp32" output.fields=false precision=bf16 training.fp32_after_step=4 >"$work/bf16_fp32.log" 2>&1
  "$PDEGEN" train "$deck" output.dir="$work/bf16_only" output.fields=false precision=bf16 >/dev/null 2>&1
  check "fp32 after step 4 says so, and its steps 5-6 differ from all-bf16 steps 5-6 while steps 1-4 agree" \
    "grep -q 'fp32 after step 4' '$work/bf16_fp32.log' && diff <(head -5 '$work/bf16_fp32/history.csv' | cut -d, -f1,3) <(head -5 '$work/bf16_only/history.csv' | cut -d, -f1,3) >/dev/null && ! h5diff -d 0 '$work/bf16_fp32/checkpoints/step_00000006.h5' '$work/bf16_only/checkpoints/step_00000006.h5' /parameters /parameters >/dev/null 2>&1"
  "$PDEGEN" train "$deck" output.dir="$work/bf16" output.fields=false precision=bf16 >"$work/bf16.log" 2>&1
  check "a bf16 run says so in its log and summary.json" \
    "[ $? -eq 0 ] && grep -q 'precision: bf16 activations' '$work/bf16.log' && json '$work/bf16/summary.json' 'd[\"precision\"]' | grep -qx bf16"
  check "... and differs from the fp32 run (bf16 really ran)" \
    "! h5diff -d 0 '$work/full/checkpoints/step_00000006.h5' '$work/bf16/checkpoints/step_00000006.h5' /parameters /parameters >/dev/null 2>&1"
else
  echo "SKIP: bf16 on the CPU (no avx512_bf16 or amx_bf16 in /proc/cpuinfo)"
fi
DNNL_MAX_CPU_ISA=AVX512_CORE ONEDNN_MAX_CPU_ISA=AVX512_CORE "$PDEGEN" train "$deck" output.dir="$work/bf16_refused" precision=bf16 >"$work/bf16_refused.log" 2>&1
check "bf16 on a CPU without AVX512-BF16 or AMX is refused, exit 2, naming what it needs, before the run directory is made" \
  "[ $? -eq 2 ] && grep -q 'precision: bf16 on device: cpu needs a CPU with AVX512-BF16 or AMX' '$work/bf16_refused.log' && [ ! -e '$work/bf16_refused' ]"

# Winograd convolutions (cpu.conv_algorithm: auto, the default) at 32 channels and more, where
# oneDNN has them (AVX-512): named in the debug log, absent with direct, and restarted exactly.
if grep -qw avx512f /proc/cpuinfo; then
  restart_check "Winograd convolutions (32 and 64 channels)" network.base_channels=32
  "$PDEGEN" train "$deck" --log-level debug output.dir="$work/winograd" output.fields=false network.base_channels=32 >"$work/winograd.log" 2>&1
  "$PDEGEN" train "$deck" --log-level debug output.dir="$work/direct" output.fields=false network.base_channels=32 cpu.conv_algorithm=direct >"$work/direct.log" 2>&1
  check "cpu.conv_algorithm auto runs the 32-channel convolutions as Winograd, direct runs none, and the results differ" \
    "grep -q \"conv 'enc0.conv1' .*forward jit_wino\" '$work/winograd.log' && ! grep -q wino '$work/direct.log' && ! h5diff -d 0 '$work/winograd/checkpoints/step_00000006.h5' '$work/direct/checkpoints/step_00000006.h5' /parameters /parameters >/dev/null 2>&1"
else
  echo "SKIP: Winograd convolutions (oneDNN has them with AVX-512 only)"
fi

"$PDEGEN" predict "$deck" output.dir="$work/predict" --checkpoint "$work/full/checkpoints/step_00000006.h5" >"$work/predict.log" 2>&1
check "predict exits 0 and writes predict.h5/.xdmf/.json" "[ $? -eq 0 ] && [ -s '$work/predict/predict.h5' ] && [ -s '$work/predict/predict.xdmf' ]"
check "predict.json parses, every field has its type, rel_l2 is an array of 4 numbers" \
  "types '$work/predict/predict.json' predict && json '$work/predict/predict.json' 'len(d[\"rel_l2\"])' | grep -qx 4"
check "predict reports finite rel_l2 for every sample" "json '$work/predict/predict.json' 'd[\"rel_l2_mean\"] > 0' | grep -q True"
check "predict.json times the network apart from the reference solves, in the deck's precision" \
  "json '$work/predict/predict.json' '0 < d[\"network_seconds\"] <= d[\"seconds\"] and d[\"precision\"] == \"fp32\"' | grep -q True"
"$PDEGEN" predict "$deck" output.dir="$work/predict_b1" training.batch_size=1 --checkpoint "$work/full/checkpoints/step_00000006.h5" >/dev/null 2>&1
errors() { json "$1" 'json.loads(d["rel_l2"]) if isinstance(d["rel_l2"], str) else d["rel_l2"]'; }
check "predict one sample per forward gives the errors of one forward of all four (to fp32 rounding)" \
  "/usr/bin/python3 -c 'import sys; a, b = eval(sys.argv[1]), eval(sys.argv[2]); sys.exit(not (len(a) == len(b) == 4 and all(abs(x - y) <= 1e-5 * y for x, y in zip(a, b))))' \"\$(errors '$work/predict/predict.json')\" \"\$(errors '$work/predict_b1/predict.json')\""
"$PDEGEN" predict "$deck" output.dir="$work/predict2" network.base_channels=8 --checkpoint "$work/full/checkpoints/step_00000006.h5" >"$work/predict2.log" 2>&1
check "predict refuses a checkpoint of another network, naming it" "[ $? -eq 2 ] && grep -q 'step_00000006.h5' '$work/predict2.log'"

"$PDEGEN" solve "$deck" output.dir="$work/solve" >"$work/solve.log" 2>&1
check "solve exits 0 and writes reference.h5/.xdmf" "[ $? -eq 0 ] && [ -s '$work/solve/reference.h5' ] && [ -s '$work/solve/reference.xdmf' ]"
check "solve.json parses and every field has its type" "types '$work/solve/solve.json' solve"
check "solve names the grid it solved on" "grep -q 'reference solutions of poisson2d on the 16x16 grid' '$work/solve.log'"

# SIGTERM during a long run: a clean stop after the current step, with a checkpoint.
"$PDEGEN" train "$deck" output.dir="$work/term" training.steps=100000 evaluation.every=0 >"$work/term.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do [ -s "$work/term/history.csv" ] && [ "$(wc -l < "$work/term/history.csv")" -ge 3 ] && break; sleep 0.1; done
kill -TERM $pid
wait $pid
rc=$?
check "SIGTERM exits 143" "[ $rc -eq 143 ]"
check "SIGTERM leaves status interrupted and a final checkpoint" \
  "json '$work/term/summary.json' 'd[\"status\"]' | grep -q interrupted && [ -n \"\$(ls '$work/term/checkpoints/')\" ]"

"$PDEGEN" train "$deck" output.dir="$work/nan" optimizer.lr=1e30 training.steps=30 >"$work/nan.log" 2>&1
rc=$?
check "a diverging run exits 4" "[ $rc -eq 4 ]"
check "... with status diverged and a clear message" \
  "json '$work/nan/summary.json' 'd[\"status\"]' | grep -q diverged && grep -q 'training diverged' '$work/nan.log'"

# Dynamic loss scaling (the fp16 mechanism) is plain fp32 arithmetic, so it is tested here: with
# power-of-two scales the unscaled gradient is the fp32 one bit for bit; a scale beyond fp32's range
# overflows the gradient, and such a step must change nothing (compared with a learning rate of 0).
noeval="output.fields=false evaluation.every=0"
"$PDEGEN" train "$deck" output.dir="$work/ls_on" $noeval loss_scaling.enabled=true loss_scaling.growth_interval=2 >"$work/ls_on.log" 2>&1
check "loss scaling in fp32 exits 0, growing the scale every 2 clean steps" \
  "[ $? -eq 0 ] && json '$work/ls_on/summary.json' 'd[\"loss_scale\"], d[\"skipped_steps\"]' | grep -qx '(524288, 0)'"
"$PDEGEN" train "$deck" output.dir="$work/ls_off" $noeval >/dev/null 2>&1
check "... and gives bit-identical parameters and optimizer state to no scaling" \
  "h5diff -d 0 '$work/ls_off/checkpoints/step_00000006.h5' '$work/ls_on/checkpoints/step_00000006.h5' /parameters /parameters >/dev/null && h5diff '$work/ls_off/checkpoints/step_00000006.h5' '$work/ls_on/checkpoints/step_00000006.h5' /optimizer_state /optimizer_state >/dev/null"
"$PDEGEN" train "$deck" output.dir="$work/ls_split" $noeval loss_scaling.enabled=true loss_scaling.growth_interval=2 training.steps=3 >/dev/null 2>&1 &&
  "$PDEGEN" train "$deck" output.dir="$work/ls_split" $noeval loss_scaling.enabled=true loss_scaling.growth_interval=2 training.restart=latest >/dev/null 2>&1
check "a restart continues with the checkpoint's scale and clean-step count" \
  "json '$work/ls_split/summary.json' 'd[\"loss_scale\"]' | grep -qx '524288'"
big="loss_scaling.enabled=true loss_scaling.initial_scale=1e45 loss_scaling.max_scale=1e45"
"$PDEGEN" train "$deck" output.dir="$work/ls_big" $noeval $big training.steps=3 training.checkpoint_every=1 >"$work/ls_big.log" 2>&1
check "gradient overflow skips the step, halves the scale and says so" \
  "[ $? -eq 0 ] && json '$work/ls_big/summary.json' 'd[\"status\"], d[\"steps\"], d[\"skipped_steps\"], d[\"loss_scale\"]' | grep -qx \"('completed', 3, 3, 1.25e+44)\" && grep -q 'step 3: the gradient overflowed at loss scale 2.5e+44: step skipped, scale now 1.25e+44' '$work/ls_big.log'"
ckpt() { echo "$work/$1/checkpoints/step_0000000$2.h5"; }
check "... leaving parameters and optimizer state untouched (steps 1 and 3 hold the same; a taken step differs)" \
  "h5diff -d 0 $(ckpt ls_big 1) $(ckpt ls_big 3) /parameters /parameters >/dev/null && h5diff $(ckpt ls_big 1) $(ckpt ls_big 3) /optimizer_state /optimizer_state >/dev/null && ! h5diff -d 0 $(ckpt ls_big 3) $(ckpt ls_on 6) /parameters /parameters >/dev/null 2>&1 && h5dump -a /scalars/optimizer_steps $(ckpt ls_big 3) | grep -q '(0): 0'"
"$PDEGEN" train "$deck" output.dir="$work/ls_lbfgs" loss_scaling.enabled=true optimizer.type=lbfgs >"$work/ls_lbfgs.log" 2>&1
check "loss scaling with L-BFGS is refused with a reason" "[ $? -eq 2 ] && grep -q 'line search' '$work/ls_lbfgs.log'"

finish

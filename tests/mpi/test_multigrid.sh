#!/usr/bin/env bash
# Multigrid training on the tiny deck (16 x 16, U-Net depth 2): a V-cycle over 16, 8 and 4 nodes per
# axis visits the levels in order and reports them (progress line, history.csv, summary.json with
# the error at every level); a restart in the middle of a visit and at a visit boundary ends bit for
# bit where the uninterrupted run ends, with the optimizer reset or carried; a half-V cycle with the
# optimizer carried equals training at 8 then restarting at 16 (the weights and the optimizer state
# pass between levels untouched); a visit ended by its stop_error restarts into the next one; 2 ranks
# follow the 1-rank loss trajectory; bad level settings are refused naming the key.
#   PDEGEN=build/cpu/pdegen PDEGEN_MPIEXEC=mpiexec.mpich bash tests/mpi/test_multigrid.sh
set -u
PDEGEN="${PDEGEN:-build/cpu/pdegen}"
MPIEXEC="${PDEGEN_MPIEXEC:-mpiexec.mpich}"
PYTHON="${PYTHON:-/usr/bin/python3}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1

source "$here/../lib.sh"
require_mpi
require_pdegen

deck="$root/tests/decks/tiny.yaml"
common=(training.log_every=1 evaluation.every=2 training.checkpoint_every=2 output.checkpoint_keep=30
  parallel.consistency_every=1)
vcycle=("multigrid={levels: 3, cycle: v}" training.steps=4)

# The same final state: parameters and optimizer state bit for bit.
same_state() {
  h5diff -d 0 "$1" "$2" /parameters /parameters >/dev/null 2>&1 &&
    h5diff "$1" "$2" /optimizer_state /optimizer_state >/dev/null 2>&1
}
ckpt() { printf '%s/checkpoints/step_%08d.h5' "$1" "$2"; }

for state in reset carry; do
  mg=("${vcycle[@]}" multigrid.optimizer_state=$state)
  full="$work/v-$state"
  mpi_run "v-$state" 1 train "$deck" "${common[@]}" "${mg[@]}" output.dir="$full" || continue
  for at in 6 8; do  # inside visit 2 (steps 5-8), and at its end
    r="$work/v-$state-r$at"
    mkdir -p "$r"
    cp "$(ckpt "$full" $at)" "$r/start.h5"
    if mpi_run "v-$state-r$at" 1 train "$deck" "${common[@]}" "${mg[@]}" output.dir="$r" training.restart="$r/start.h5"; then
      check "V-cycle, optimizer $state: restart at step $at ends bit for bit as the full run" \
        "same_state '$(ckpt "$full" 20)' '$(ckpt "$r" 20)'"
    fi
  done
done

# The V-cycle run's reports.
full="$work/v-reset"
check "the progress line names the level and its grid" "grep -q 'step 10/20 | level 0 (4x4)' '$work/v-reset.log'"
check "history.csv's level column follows the cycle 2 1 0 1 2" \
  "[ \"\$(cut -d, -f10 '$full/history.csv' | tail -n +2 | uniq | tr '\n' ' ')\" = '2 1 0 1 2 ' ]"
check "summary.json of a multigrid run parses and every field has its type" \
  "$PYTHON '$root/tests/decks/check_json_types.py' summary '$full/summary.json'"
check "summary.json: the error at every level and the five visits" "$PYTHON - '$full/summary.json' <<'PY'
import json, math, sys
s = json.load(open(sys.argv[1]))
m = s['multigrid']
assert [l['resolution'] for l in m['levels']] == [4, 8, 16], m['levels']
assert all(math.isfinite(l['rel_l2_mean']) and l['rel_l2_mean'] > 0 for l in m['levels'])
assert [v['level'] for v in m['visits']] == [2, 1, 0, 1, 2]
assert [v['first_step'] for v in m['visits']] == [0, 4, 8, 12, 16]
assert all(v['ended_by'] == 'steps' and v['steps'] == 4 for v in m['visits'])
assert m['levels'][2]['rel_l2_mean'] == s['eval']['rel_l2_mean']
PY"

# Half-V with the optimizer carried = 4 steps at 8x8, then a restart at 16x16 for 4 more.
if mpi_run "half-v" 1 train "$deck" "${common[@]}" "multigrid={levels: 2, optimizer_state: carry}" \
  training.steps=4 output.dir="$work/half-v" &&
  mpi_run "coarse" 1 train "$deck" "${common[@]}" problem.resolution=8 training.steps=4 output.dir="$work/two" &&
  mpi_run "fine" 1 train "$deck" "${common[@]}" training.steps=8 training.restart=latest \
    training.allow_deck_changes=true output.dir="$work/two"; then
  check "half-V, optimizer carried: the weights and state pass from 8x8 to 16x16 bit for bit" \
    "same_state '$(ckpt "$work/half-v" 8)' '$(ckpt "$work/two" 8)'"
  check "the first visit's end state is the 8x8 run's" \
    "same_state '$(ckpt "$work/half-v" 4)' '$(ckpt "$work/two" 4)'"
fi

# A stop_error that the first evaluation reaches ends the coarse visit after 2 of its 4 steps.
stop=("multigrid={levels: 2, level0: {stop_error: 10}}" training.steps=4 evaluation.every=2)
if mpi_run "stop" 1 train "$deck" "${common[@]}" "${stop[@]}" output.dir="$work/stop"; then
  check "the coarse visit ends by its stop_error after 2 steps, the run after 6" "$PYTHON - '$work/stop/summary.json' <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
v = s['multigrid']['visits']
assert s['steps'] == 6, s['steps']
assert v[0]['ended_by'] == 'stop_error' and v[0]['steps'] == 2, v[0]
assert v[1]['first_step'] == 2 and v[1]['steps'] == 4, v[1]
PY"
  mkdir -p "$work/stop-r"
  cp "$(ckpt "$work/stop" 2)" "$work/stop-r/start.h5"
  if mpi_run "stop-r" 1 train "$deck" "${common[@]}" "${stop[@]}" output.dir="$work/stop-r" \
    training.restart="$work/stop-r/start.h5"; then
    check "a restart at the stop goes on in the next visit, bit for bit" \
      "same_state '$(ckpt "$work/stop" 6)' '$(ckpt "$work/stop-r" 6)'"
  fi
fi

# multigrid.deepen: at 8x8 a depth-1 U-Net of 8 channels, at 16x16 the deck's depth-2 U-Net of 4 and 8
# channels, whose inner level takes the 8-channel conv enc0.conv1 (8 x 8 x 3 x 3 + 8 = 584 values) as
# enc1.conv1; the input conv and the head change shape and start fresh.
deep=("multigrid={levels: 2, deepen: true}" training.steps=4)
if mpi_run "deepen" 1 train "$deck" "${common[@]}" "${deep[@]}" output.dir="$work/deepen"; then
  check "deepen: the 16x16 U-Net inherits the 584 values of the 8x8 one's inner conv" \
    "grep -q 'deepens from 1 to 2 levels: 584 of its' '$work/deepen.log'"
  for at in 2 6; do
    r="$work/deepen-r$at"
    mkdir -p "$r"
    cp "$(ckpt "$work/deepen" $at)" "$r/start.h5"
    if mpi_run "deepen-r$at" 1 train "$deck" "${common[@]}" "${deep[@]}" output.dir="$r" training.restart="$r/start.h5"; then
      check "deepen: restart at step $at ends bit for bit as the full run" \
        "same_state '$(ckpt "$work/deepen" 8)' '$(ckpt "$r" 8)'"
    fi
  done
fi

# 2 ranks follow the 1-rank V-cycle.
if mpi_run "v-p2" 2 train "$deck" "${common[@]}" "${vcycle[@]}" output.dir="$work/v-p2"; then
  check "2 ranks follow the 1-rank V-cycle's loss to 1e-5" \
    "$PYTHON '$here/compare_history.py' --tol 1e-5 --label multigrid --rows 20 '$full/history.csv' P=2:'$work/v-p2/history.csv' >/dev/null"
fi

# The evaluation at a fixed resolution while training coarser.
if mpi_run "eval-res" 1 train "$deck" "${common[@]}" problem.resolution=8 evaluation.resolution=16 \
  training.steps=2 output.dir="$work/eval-res"; then
  check "evaluation.resolution: a network trained at 8x8 is evaluated at 16x16" \
    "$PYTHON -c \"import json; s = json.load(open('$work/eval-res/summary.json')); assert s['eval']['resolution'] == 16\""
fi

"$PDEGEN" check "$deck" "${vcycle[@]}" >"$work/check.log" 2>&1
check "check lists the cycle's visits and every level's cost" \
  "grep -q 'visits (level): 2 1 0 1 2; 20 steps in all' '$work/check.log' && grep -q 'level 0 (4x4): 4 steps per visit, batch 4' '$work/check.log'"

# Bad level settings.
refused() {  # refused NAME PATTERN overrides...: check exits 2 with PATTERN in its message
  local name=$1 pattern=$2
  shift 2
  "$PDEGEN" check "$deck" "$@" >"$work/$name.log" 2>&1
  local rc=$?
  check "refused: $name" "[ $rc -eq 2 ] && grep -q \"$pattern\" '$work/$name.log'"
}
refused "levels out of order" "multigrid.level1.resolution' (4) must exceed that of level0 (8)" \
  "multigrid={levels: 3, level0: {resolution: 8}, level1: {resolution: 4}}"
refused "a finest level off the problem grid" "must equal problem.resolution (16)" \
  "multigrid={levels: 2, level1: {resolution: 12}}"
refused "a level the U-Net cannot halve" "multigrid.level0 (resolution 5)" \
  "multigrid={levels: 2, level0: {resolution: 5}}"
refused "a level section beyond levels" "multigrid.level2" "multigrid={levels: 2, level2: {steps: 3}}"
refused "an evaluation grid the U-Net cannot halve" "evaluation.resolution (9)" evaluation.resolution=9
refused "deepen with a V-cycle" "'multigrid.deepen' needs cycle half_v, not v" "multigrid={levels: 2, cycle: v, deepen: true}"
refused "deepen deeper than the network" "needs network.depth >= 3" "multigrid={levels: 3, deepen: true}"
finish

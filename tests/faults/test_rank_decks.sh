#!/usr/bin/env bash
# Ranks started with different decks (MPMD command lines: `-n 1 pdegen ... : -n 1 pdegen ... key=v`)
# stop at start-up with exit 2 and a message naming the first differing key and the rank, at 2 and
# 3 ranks, whatever the key: one that changes the trajectory silently (batch size, seed), one caught
# only late before (lr), one that made the job hang (steps).
#   PDEGEN=build/cpu/pdegen PDEGEN_MPIEXEC=mpiexec.mpich bash tests/faults/test_rank_decks.sh
set -u
PDEGEN="${PDEGEN:-build/cpu/pdegen}"
MPIEXEC="${PDEGEN_MPIEXEC:-mpiexec.mpich}"
here="$(cd "$(dirname "$0")" && pwd)"
deck="$here/../decks/tiny.yaml"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
source "$here/../lib.sh"
require_pdegen
require_mpi
export OMP_NUM_THREADS=1

# mismatch NAME RANKS_SAME KEY=VALUE BEFORE: RANKS_SAME ranks with the deck, one more with the override.
mismatch() {
  local name=$1 same=$2 override=$3 before=$4
  local key=${override%%=*} after=${override#*=} dir="$work/$name" rc
  timeout 120 "$MPIEXEC" -n "$same" "$PDEGEN" train "$deck" output.dir="$dir" : \
    -n 1 "$PDEGEN" train "$deck" output.dir="$dir" "$override" >"$work/$name.log" 2>&1
  rc=$?
  check "$name: $((same + 1)) ranks, rank $same with $override: exit 2 (got $rc), no hang" "[ $rc -eq 2 ]"
  check "$name: the message names $key, both values and rank $same" \
    "grep -qF \"the ranks were started with different decks: $key is $before in rank 0's deck, $after in rank $same's deck\" '$work/$name.log'"
  check "$name: nothing was trained" "[ ! -e '$dir/history.csv' ] && [ ! -d '$dir/checkpoints' ]"
}

mismatch batch 1 training.batch_size=8 4
mismatch lr 1 optimizer.lr=0.01 0.001
mismatch seed 1 training.seed=3 7
mismatch steps 1 training.steps=9 6
mismatch seed3 2 training.seed=5 7
mismatch norm3 2 network.norm=batch none

# The same deck on every rank still trains.
if timeout 120 "$MPIEXEC" -n 2 "$PDEGEN" train "$deck" output.dir="$work/same" >"$work/same.log" 2>&1; then
  pass "the same deck on 2 ranks trains"
else
  fail "the same deck on 2 ranks trains" "$(tail -n 3 "$work/same.log" | tr '\n' ' ')"
fi
finish

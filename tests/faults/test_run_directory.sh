#!/usr/bin/env bash
# A run directory belongs to one run:
#  - a second run with another deck (or the same deck from scratch) into it is refused with exit 2,
#    and leaves every file of the first run as it was;
#  - two concurrent runs: the second is refused (the lock), the first completes;
#  - output.existing=move_aside moves the old run aside intact and starts afresh;
#  - a rewind (--restart of an earlier checkpoint, with a deliberate change) moves the later
#    checkpoints aside, so a later `restart: latest` resumes the new trajectory, not the old one;
#  - a run killed before its first checkpoint, started again with the same deck, starts over.
#   PDEGEN=build/cpu/pdegen bash tests/faults/test_run_directory.sh
set -u
PDEGEN="${PDEGEN:-build/cpu/pdegen}"
MPIEXEC="${PDEGEN_MPIEXEC:-mpiexec.mpich}"
here="$(cd "$(dirname "$0")" && pwd)"
deck="$here/../decks/tiny.yaml"
work="$(mktemp -d)"
trap 'pkill -KILL -f "output.dir=$work/" 2>/dev/null; rm -rf "$work"' EXIT
source "$here/../lib.sh"
require_pdegen
export OMP_NUM_THREADS=1
run() { "$PDEGEN" train "$deck" "$@" >"$work/last.log" 2>&1; }
sums() { (cd "$1" && find . -type f ! -name pdegen.log ! -name .lock | sort | xargs md5sum); }

d="$work/one"
run output.dir="$d" training.checkpoint_every=2 || fail "the first run trains" "$(tail -n 2 "$work/last.log")"
sums "$d" >"$work/before.md5"
run output.dir="$d" optimizer.lr=0.01
rc=$?
check "another deck into the run's directory: exit 2 (got $rc)" "[ $rc -eq 2 ]"
check "the refusal says what holds the directory and the three ways out" \
  "grep -q \"output.dir '$d' holds another run\" '$work/last.log' && grep -q 'training.restart=latest' '$work/last.log' &&
   grep -q 'output.existing=move_aside' '$work/last.log'"
run output.dir="$d"
rc=$?
check "the same deck from scratch into it: exit 2 too (got $rc)" "[ $rc -eq 2 ]"
check "every file of the first run is unchanged" "sums '$d' | diff -q - '$work/before.md5' >/dev/null"

# Two at once: a long first run holds the lock.
c="$work/concurrent"
"$PDEGEN" train "$deck" output.dir="$c" problem.resolution=64 training.steps=100 >"$work/first.log" 2>&1 &
first=$!
for _ in $(seq 100); do [ -f "$c/history.csv" ] && break; sleep 0.1; done
run output.dir="$c" problem.resolution=64 training.steps=100
rc=$?
check "a second run while the first is training: exit 2 (got $rc)" "[ $rc -eq 2 ]"
check "the refusal names the directory and the holder's pid" \
  "grep -qE \"output.dir '$c' is in use by another pdegen run \(pid $first on \" '$work/last.log'"
wait "$first"
rc=$?
check "the first run completes undisturbed (exit $rc)" \
  "[ $rc -eq 0 ] && grep -q '\"status\": \"completed\"' '$c/summary.json' && grep -q '\"steps\": 100' '$c/summary.json'"

# Moved aside: the old run intact under a dated name, the new one alone in the directory.
run output.dir="$d" optimizer.lr=0.01 output.existing=move_aside
rc=$?
aside=$(ls -d "$d".2* 2>/dev/null | head -n 1)
check "output.existing=move_aside: exit 0 (got $rc), the old run moved to $aside" "[ $rc -eq 0 ] && [ -d '$aside' ]"
check "the moved run is intact" "sums '$aside' | diff -q - '$work/before.md5' >/dev/null"
check "the new run is alone in the directory (its deck, its 6 steps)" \
  "grep -q 'lr: 0.01' '$d/deck.resolved.yaml' && [ \$(ls '$d/checkpoints' | wc -l) -eq 1 ]"

# "DIR/" names DIR: the old run goes beside it, not into it.
t="$work/slash"
run output.dir="$t/" || fail "the trailing-slash run trains"
run output.dir="$t/" output.existing=move_aside
rc=$?
check "output.dir with a trailing slash, moved aside: exit 0 (got $rc), the old run beside it" \
  "[ $rc -eq 0 ] && ls -d '$t'.2* >/dev/null 2>&1 && [ -f '$t/summary.json' ] && [ ! -d '$t/slash' ]"

# A rewind: 10 steps with a checkpoint every 2, back to step 4 with another lr (deliberately),
# stopped at 7, then continued with restart: latest to 10.
r="$work/rewind"
run output.dir="$r" training.steps=10 training.checkpoint_every=2 output.checkpoint_keep=10 || fail "the rewind's first run trains"
cut -d, -f1,3 "$r/history.csv" >"$work/old.csv"
run output.dir="$r" --restart "$r/checkpoints/step_00000004.h5" training.steps=7 training.checkpoint_every=2 \
  optimizer.lr=0.01 training.allow_deck_changes=true
rc=$?
check "the rewind to step 4 runs (exit $rc) and says where the later trajectory went" \
  "[ $rc -eq 0 ] && grep -q 'rewinding to step 4: the 3 later checkpoint(s)' '$work/last.log'"
check "the old trajectory's steps 6, 8, 10 and its summary are set aside together" \
  "ls '$r'/abandoned-*/checkpoints/step_00000006.h5 '$r'/abandoned-*/checkpoints/step_00000010.h5 '$r'/abandoned-*/summary.json >/dev/null 2>&1"
run output.dir="$r" training.restart=latest training.steps=10 training.checkpoint_every=2 optimizer.lr=0.01
rc=$?
check "restart: latest then resumes the NEW trajectory at step 7 (exit $rc)" \
  "[ $rc -eq 0 ] && grep -q 'restarted from $r/checkpoints/step_00000007.h5 at step 7' '$work/last.log'"
check "history.csv has steps 1-10 once each, steps 5-10 from the new trajectory" \
  "[ \"\$(cut -d, -f1 '$r/history.csv' | tail -n +2 | tr '\n' ' ')\" = '1 2 3 4 5 6 7 8 9 10 ' ] &&
   [ \"\$(sed -n 2,5p '$work/old.csv')\" = \"\$(cut -d, -f1,3 '$r/history.csv' | sed -n 2,5p)\" ] &&
   ! grep -qxF \"\$(sed -n 8p '$work/old.csv')\" '$r/history.csv'"

# Killed before its first checkpoint, started again with the same deck and restart: latest.
k="$work/early"
run output.dir="$k" training.restart=latest training.checkpoint_every=0 training.steps=3 || fail "early run"
rm -rf "$k/checkpoints"/*  # as if killed before any checkpoint
run output.dir="$k" training.restart=latest training.checkpoint_every=0 training.steps=3
rc=$?
check "the same deck with restart: latest and no checkpoint starts over (exit $rc)" \
  "[ $rc -eq 0 ] && grep -q 'has no checkpoint: starting at step 0' '$work/last.log'"
finish

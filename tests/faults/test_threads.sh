#!/usr/bin/env bash
# Threads per rank on a shared node: without OMP_NUM_THREADS, 2 unbound ranks split the CPUs
# between them and say so; with OMP_NUM_THREADS asking for more threads than the CPUs hold, the run
# warns that it is oversubscribed and says what to do.
#   PDEGEN=build/cpu/pdegen PDEGEN_MPIEXEC=mpiexec.mpich bash tests/faults/test_threads.sh
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
cpus=$(nproc)  # the CPUs in this shell's affinity mask, which the ranks inherit
[ "$cpus" -ge 2 ] || skip "2 ranks on 1 CPU are oversubscribed whatever the threads"
per_rank=$((cpus / 2))

# tools/test.sh exports OMP_NUM_THREADS for every test: the default is what is tested here.
if env -u OMP_NUM_THREADS timeout 300 "$MPIEXEC" -n 2 "$PDEGEN" train "$deck" training.steps=2 \
  output.dir="$work/default" >"$work/default.log" 2>&1; then
  check "2 unbound ranks without OMP_NUM_THREADS run $per_rank thread(s) each, and say why" \
    "grep -qF 'threads: $per_rank per rank ($cpus CPUs available to this rank, shared by 2 ranks on this node; set OMP_NUM_THREADS to override)' '$work/default.log'"
  check "the default is not oversubscribed" "! grep -q 'oversubscribed' '$work/default.log'"
else
  fail "train on 2 ranks without OMP_NUM_THREADS exits 0" "$(tail -n 3 "$work/default.log" | tr '\n' ' ')"
fi

# As many threads per rank as the node has CPUs, at 2 ranks: twice the CPUs (2 x 2 on 2 cores).
if env OMP_NUM_THREADS="$cpus" OMP_WAIT_POLICY=passive timeout 300 "$MPIEXEC" -n 2 "$PDEGEN" train "$deck" \
  training.steps=2 output.dir="$work/over" >"$work/over.log" 2>&1; then
  check "OMP_NUM_THREADS is kept and named" "grep -qF 'threads: $cpus per rank (OMP_NUM_THREADS)' '$work/over.log'"
  check "2 ranks x $cpus threads on $cpus CPUs warn once that they are oversubscribed, how slow and what to do" \
    "[ \$(grep -c 'threads: oversubscribed by OMP_NUM_THREADS=$cpus: 2 ranks run $((2 * cpus)) OpenMP threads on $cpus CPUs' '$work/over.log') -eq 1 ] &&
     grep -q 'times slower' '$work/over.log' && grep -qF 'set it to $per_rank' '$work/over.log'"
else
  fail "train on 2 ranks with OMP_NUM_THREADS=$cpus exits 0" "$(tail -n 3 "$work/over.log" | tr '\n' ' ')"
fi

# check computes nothing, so it leaves the threads alone and says nothing about them.
env -u OMP_NUM_THREADS "$PDEGEN" check "$deck" >"$work/check.log" 2>&1
check "check does not choose threads" "! grep -q 'threads:' '$work/check.log'"
finish

#!/usr/bin/env bash
# A run that outgrows its memory ends with exit 1 and a message that says so and names the deck keys
# that size it, not "unexpected error: std::bad_alloc". The memory is capped with `ulimit -v`.
#   PDEGEN=build/cpu/pdegen bash tests/faults/test_out_of_memory.sh
set -u
PDEGEN="${PDEGEN:-build/cpu/pdegen}"
MPIEXEC="${PDEGEN_MPIEXEC:-mpiexec.mpich}"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

source "$here/../lib.sh"
require_pdegen
ldd "$PDEGEN" 2>/dev/null | grep -q libasan && skip "AddressSanitizer reserves more address space than the cap"
# 1.5 GB of address space holds pdegen and its libraries but not a 1024^2 batch of 16 (5 GiB).
(
  ulimit -v 1500000
  OMP_NUM_THREADS=1 timeout 300 "$PDEGEN" train "$here/../../input_decks/quickstart.yaml" problem.resolution=1024 \
    evaluation.samples=1 output.field_samples=1 training.steps=1 output.dir="$work/run" >"$work/oom.log" 2>&1
)
rc=$?
check "a run out of memory exits 1" "[ $rc -eq 1 ]"
check "it says it ran out of memory while training and which keys to lower" \
  "grep -qF \"out of memory while running 'pdegen train' on this rank\" '$work/oom.log' &&
   grep -qF 'lower problem.resolution, training.batch_size or network.base_channels' '$work/oom.log'"
check "it is not reported as an unexpected error" "! grep -q 'unexpected error' '$work/oom.log'"
[ "$failed" -eq 0 ] || tail -n 3 "$work/oom.log"
finish

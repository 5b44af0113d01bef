#!/usr/bin/env bash
# What data-parallel runs write is independent of the rank count:
#   - fields.h5 of an untrained network (training.steps=0: parameters straight from the seed) written
#     by P = 2, 3, 4 ranks is bit for bit the 1-rank file (every dataset of /fields and /sample_index;
#     5 field samples of 6, so at 4 ranks the last rank writes none);
#   - `pdegen predict` from one checkpoint at P = 1..4 writes bit-identical predict.h5 files, also
#     when a rank holds no sample (3 samples on 4 ranks);
#   - a checkpoint written by a 2-rank run at step 10 restarts at 3 ranks and at 1 rank, and the
#     continued runs follow the uninterrupted 1-rank loss trajectory to a relative 1e-5 (with batch
#     norm also the final evaluation, which uses the running statistics from the checkpoint).
#   PDEGEN=build/cpu/pdegen PDEGEN_MPIEXEC=mpiexec.mpich bash tests/mpi/test_parallel_outputs.sh
set -u
PDEGEN="${PDEGEN:-build/cpu/pdegen}"
MPIEXEC="${PDEGEN_MPIEXEC:-mpiexec.mpich}"
PYTHON="${PYTHON:-/usr/bin/python3}"
here="$(cd "$(dirname "$0")" && pwd)"
deck="$here/trajectory.yaml"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1  # 4 ranks share the 2 cores of a CI machine

source "$here/../lib.sh"
require_mpi
if ! "$PYTHON" -c "import h5py, numpy" 2>/dev/null; then
  skip "$PYTHON has no h5py/numpy"
fi
# run NAME P VERB [args...]: one pdegen run on the deck; fails the check on exit != 0.
run() {
  local name=$1 np=$2 verb=$3
  shift 3
  mpi_run "$name" "$np" "$verb" "$deck" "$@"
}

# same_files WHAT FILE REFERENCE_DIR DIR...: every dataset of DIR/FILE equals REFERENCE_DIR's.
same_files() {
  local what=$1 file=$2 ref=$3
  shift 3
  local specs=()
  for d in "$@"; do specs+=("$d:$work/$d/$file"); done
  if "$PYTHON" "$here/compare_fields.py" "$work/$ref/$file" "${specs[@]}"; then
    pass "$what"
  else
    fail "$what"
  fi
}

# 1. Untrained network: fields.h5 at every rank count.
for np in 1 2 3 4; do run "untrained.p$np" "$np" train output.dir="$work/untrained.p$np" training.steps=0; done
same_files "fields.h5 of P = 2, 3, 4 ranks is bit for bit the 1-rank file" fields.h5 untrained.p1 \
  untrained.p2 untrained.p3 untrained.p4

# 2. Restart across rank counts: 10 steps on 2 ranks, continued to 20 on 3 and on 1 rank, against
# 20 uninterrupted steps on 1 rank.
run full.p1 1 train output.dir="$work/full.p1"
run first.p2 2 train output.dir="$work/first.p2" training.steps=10
ckpt="$work/first.p2/checkpoints/step_00000010.h5"
if [ -s "$ckpt" ]; then pass "a 2-rank run writes its step-10 checkpoint"; else fail "a 2-rank run writes its step-10 checkpoint"; fi
for np in 3 1; do
  run "resumed.p$np" "$np" train output.dir="$work/resumed.p$np" --restart "$ckpt" || continue
  if grep -q "restarted from .*step_00000010.h5 at step 10" "$work/resumed.p$np.log"; then
    pass "the 2-rank checkpoint restarts on $np rank(s) at step 10"
  else
    fail "the 2-rank checkpoint restarts on $np rank(s) at step 10" "no 'restarted from' line in the log"
  fi
done
echo "largest relative deviation of the loss at steps 11-20 from the uninterrupted 1-rank run"
if "$PYTHON" "$here/compare_history.py" --tol 1e-5 --rows 10 --label "restart 2 -> P ranks" \
  "$work/full.p1/history.csv" P=3:"$work/resumed.p3/history.csv" P=1:"$work/resumed.p1/history.csv"; then
  pass "continuing a 2-rank checkpoint on 3 and 1 rank(s) follows the uninterrupted run to 1e-5"
else
  fail "continuing a 2-rank checkpoint on 3 and 1 rank(s) follows the uninterrupted run to 1e-5"
fi

# ... and with synchronized batch norm, whose running statistics travel in the checkpoint: the final
# evaluation (eval mode, running statistics) must agree too.
run bn_full.p1 1 train output.dir="$work/bn_full.p1" network.norm=batch
run bn_first.p2 2 train output.dir="$work/bn_first.p2" network.norm=batch training.steps=10
run bn_resumed.p3 3 train output.dir="$work/bn_resumed.p3" network.norm=batch \
  --restart "$work/bn_first.p2/checkpoints/step_00000010.h5"
if "$PYTHON" "$here/compare_history.py" --tol 1e-5 --rows 10 --label "batch norm, restart 2 -> 3" \
  --columns loss,rel_l2_mean "$work/bn_full.p1/history.csv" P=3:"$work/bn_resumed.p3/history.csv"; then
  pass "batch norm: a 2-rank checkpoint continued on 3 ranks follows the 1-rank run (loss, final rel_l2) to 1e-5"
else
  fail "batch norm: a 2-rank checkpoint continued on 3 ranks follows the 1-rank run (loss, final rel_l2) to 1e-5"
fi

# 3. Prediction from that one checkpoint: the same network and samples on any rank count.
for np in 1 2 3 4; do run "predict.p$np" "$np" predict output.dir="$work/predict.p$np" --checkpoint "$ckpt"; done
same_files "predict.h5 of P = 2, 3, 4 ranks from one checkpoint is bit for bit the 1-rank file" predict.h5 \
  predict.p1 predict.p2 predict.p3 predict.p4
# ... and with 3 samples, so that at 4 ranks the last rank predicts none but still writes its part.
for np in 1 4; do
  run "predict3.p$np" "$np" predict output.dir="$work/predict3.p$np" --checkpoint "$ckpt" evaluation.samples=3 \
    output.field_samples=3
done
same_files "predict.h5 of 3 samples on 4 ranks (one rank without samples) is bit for bit the 1-rank file" \
  predict.h5 predict3.p1 predict3.p4

finish

#!/usr/bin/env bash
# Training from data (training.objective data / hybrid): a 40-sample dataset of tests/mpi/
# trajectory.yaml's problem (30 records trained, 10 held out: 20 steps of batch 6 are 4 epochs)
# trained on 1, 2 and 3 ranks follows the 1-rank loss trajectory to a relative 1e-5 (the bound and
# its reason: tests/mpi/test_trajectories.sh), for the data and the hybrid objective and for an
# FC-DenseNet with synchronized batch norm (tests/mpi/fcdensenet_trajectory.yaml); 7 steps, then a
# restart to 20 (mid-epoch: sample 42 is record 12 of epoch 1) give the 20-step run's history and
# final checkpoint bit for bit (2 ranks); summary.json reports the dataset, the reader and val_loss with their
# types. Bad input is refused with exit 2 before the run directory is touched, naming what is wrong:
# a pattern matching nothing, a truncated shard, the data section without a data objective, no
# files, multigrid levels (one dataset has one grid), and a restart on another dataset.
#   PDEGEN=build/cpu/pdegen PDEGEN_MPIEXEC=mpiexec.mpich bash tests/mpi/test_data_training.sh
set -u
PDEGEN="${PDEGEN:-build/cpu/pdegen}"
MPIEXEC="${PDEGEN_MPIEXEC:-mpiexec.mpich}"
PYTHON="${PYTHON:-/usr/bin/python3}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
deck="$here/trajectory.yaml"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1

source "$here/../lib.sh"
require_mpi
require_pdegen

mpi_run dataset 2 dataset "$deck" output.dir="$work/ds" --samples 40 --shard-samples 16
data=(training.objective=data "data.files=$work/ds/dataset_*.h5" data.validation_fraction=0.25
      evaluation.samples=2 evaluation.every=10 output.fields=false parallel.consistency_every=1)

# compare LABEL REF RUN...: the loss of each run within 1e-5 of REF's, step by step.
compare() {
  local label=$1 ref=$2
  shift 2
  local specs=()
  for r in "$@"; do specs+=("$r:$work/$r/history.csv"); done
  check "$label: the loss within 1e-5 of the 1-rank run at every step" \
    "'$PYTHON' '$here/compare_history.py' --tol 1e-5 --rows 20 --label '$label' '$work/$ref/history.csv' ${specs[*]}"
}
for np in 1 2 3; do mpi_run data.p$np $np train "$deck" output.dir="$work/data.p$np" "${data[@]}"; done
compare "data (mse)" data.p1 data.p2 data.p3
for np in 1 3; do
  mpi_run hybrid.p$np $np train "$deck" output.dir="$work/hybrid.p$np" "${data[@]}" training.objective=hybrid \
    data.loss=rel_l2 data.weight=0.5
done
compare "hybrid (rel_l2, weight 0.5)" hybrid.p1 hybrid.p3
# FC-DenseNet with batch norm: synchronized over the ranks, so 3 ranks train like 1.
for np in 1 3; do
  mpi_run fcd.p$np $np train "$here/fcdensenet_trajectory.yaml" output.dir="$work/fcd.p$np" "${data[@]:1}"
done
compare "FC-DenseNet, synchronized batch norm" fcd.p1 fcd.p3
check "data and hybrid trajectories differ (the objective is used)" \
  "! cmp -s <(cut -d, -f3 '$work/data.p1/history.csv') <(cut -d, -f3 '$work/hybrid.p1/history.csv')"
check "summary.json: every field has its type, the dataset and the reader reported" \
  "'$PYTHON' '$root/tests/decks/check_json_types.py' summary '$work/data.p2/summary.json' && '$PYTHON' - '$work/data.p2/summary.json' <<'PY'
import json, sys, math
s = json.load(open(sys.argv[1]))
d = s['data']
assert d['files'] == 3 and d['training_records'] == 30 and d['validation_records'] == 10, d
assert abs(d['epochs'] - 4.0) < 1e-12 and d['read_mb'] > 0 and 0 <= d['wait_fraction'] < 1, d
assert math.isfinite(s['val_loss']) and s['val_loss'] > 0, s['val_loss']
PY"
check "history.csv has val_loss at the evaluations" \
  "[ -n \"\$(awk -F, 'NR == 11 {print \$NF}' '$work/data.p1/history.csv')\" ]"

# Restart mid-epoch: 7 steps, then on to 20, on 2 ranks (another rank count changes the rounding).
mpi_run part 2 train "$deck" output.dir="$work/part" "${data[@]}" training.steps=7
mpi_run part.more 2 train "$deck" output.dir="$work/part" "${data[@]}" training.restart=latest
check "the checkpoint of step 7 records epoch 1, position 12 of 30 records" \
  "'$PYTHON' - '$work/part/checkpoints/step_00000007.h5' <<'PY'
import sys, h5py
s = h5py.File(sys.argv[1], 'r')['scalars'].attrs
assert (s['data_epoch'], s['data_position'], s['data_records']) == (1, 12, 30), dict(s)
PY"
check "7 steps + restart to 20 (mid-epoch, on 2 ranks) equals the 20-step run: history loss bit for bit" \
  "cmp -s <(cut -d, -f1,3 '$work/data.p2/history.csv') <(cut -d, -f1,3 '$work/part/history.csv')"
check "... and the final parameters bit for bit" \
  "h5diff '$work/data.p2/checkpoints/step_00000020.h5' '$work/part/checkpoints/step_00000020.h5' /parameters /parameters >/dev/null"

# refused NAME PATTERN [overrides...]: exit 2, the log matching PATTERN, the run directory untouched.
refused() {
  local name=$1 pattern=$2
  shift 2
  "$PDEGEN" train "$deck" output.dir="$work/$name" "$@" >"$work/$name.log" 2>&1
  local rc=$?
  check "$name: exit 2 naming the problem, nothing written" \
    "[ $rc -eq 2 ] && grep -q -- \"$pattern\" '$work/$name.log' && [ ! -e '$work/$name/history.csv' ] && [ ! -e '$work/$name/checkpoints' ]" 
}
refused nomatch "data.files '$work/nothing_\*.h5' matches no file" "${data[@]}" "data.files=$work/nothing_*.h5"
mkdir -p "$work/cut" && cp "$work/ds"/dataset_0000*.h5 "$work/cut/"
truncate -s 20000 "$work/cut/dataset_00001.h5"
refused truncated "dataset_00001.h5" "${data[@]}" "data.files=$work/cut/dataset_*.h5"
refused physics "the data section applies only with training.objective data or hybrid" "data.files=$work/ds/dataset_00000.h5"
refused nofiles "'data.files' is required" training.objective=data
refused multigrid "multigrid training needs samples at every level's resolution" "${data[@]}" multigrid.levels=2
rm "$work/cut/dataset_00001.h5" && cp "$work/ds/dataset_00001.h5" "$work/cut/"
rm "$work/cut/dataset_00002.h5"
"$PDEGEN" train "$deck" output.dir="$work/part" "${data[@]}" "data.files=$work/cut/dataset_*.h5" \
  training.steps=25 training.restart=latest >"$work/other.log" 2>&1
check "a restart on another dataset: exit 2, the epochs would not continue" \
  "[ $? -eq 2 ] && grep -q 'the epochs would not continue' '$work/other.log'"
cp -r "$work/ds" "$work/moved"
mpi_run moved 1 train "$deck" output.dir="$work/part" "${data[@]}" "data.files=$work/moved/dataset_*.h5" \
  training.steps=22 training.restart=latest
check "a restart on the same files moved elsewhere (staged) continues" \
  "[ -s '$work/part/checkpoints/step_00000022.h5' ]"
finish

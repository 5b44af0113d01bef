#!/usr/bin/env bash
# pdegen dataset: 7 poisson2d samples in shards of 3 on 1 and 3 ranks give the same files bit for
# bit (fields, sample indices), one HDF5 chunk per sample, the index range no other set uses, and a
# dataset.json whose every field has its type; --first-index 2 continues the same sequence (its rows
# are rows 2-4 of the first); poisson3d and burgers1d (a space-time grid, a 3-channel input of which
# the initial condition is stored) write their grids; usage errors name the option.
#   PDEGEN=build/cpu/pdegen PDEGEN_MPIEXEC=mpiexec.mpich bash tests/mpi/test_dataset.sh
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
py() { "$PYTHON" - "$@"; }

for np in 1 3; do
  mpi_run d$np $np dataset "$deck" output.dir="$work/d$np" --samples 7 --shard-samples 3
done
check "3 shards of 3, 3 and 1 samples and dataset.json" \
  "[ -s '$work/d1/dataset_00000.h5' ] && [ -s '$work/d1/dataset_00001.h5' ] && [ -s '$work/d1/dataset_00002.h5' ] && [ ! -e '$work/d1/dataset_00003.h5' ] && [ -s '$work/d1/dataset.json' ]"
check "dataset.json parses and every field has its type" \
  "'$PYTHON' '$root/tests/decks/check_json_types.py' dataset '$work/d1/dataset.json'"
check "no temporary file is left behind" "[ -z \"\$(find '$work/d1' '$work/d3' -name '*.tmp')\" ]"
check "1 and 3 ranks write the same fields and indices, bit for bit" \
  "for k in 0 1 2; do f=dataset_0000\$k.h5; h5diff '$work/d1/'\$f '$work/d3/'\$f /fields /fields >/dev/null && h5diff '$work/d1/'\$f '$work/d3/'\$f /sample_index /sample_index >/dev/null || exit 1; done"
check "one chunk per sample, fp32 [n, 16, 16], indices 2^42 + 0..6 in order, the deck attached" "py '$work/d1' <<'EOF'
import sys, h5py, numpy as np
d = sys.argv[1]
index = []
for k, n in enumerate([3, 3, 1]):
    with h5py.File(f'{d}/dataset_{k:05d}.h5', 'r') as f:
        for name in ('log_nu', 'u_ref'):
            x = f['fields/' + name]
            assert x.shape == (n, 16, 16) and x.dtype == np.float32 and x.chunks == (1, 16, 16), (name, x.shape, x.chunks)
            assert np.isfinite(x[()]).all() and np.abs(x[()]).max() > 0
        assert 'resolution: 16' in f.attrs['deck']
        index += list(f['sample_index'][()])
assert index == [2**42 + i for i in range(7)], index
EOF"

mpi_run slice 2 dataset "$deck" output.dir="$work/slice" --samples 3 --first-index 2
check "--first-index 2 --samples 3 gives rows 2-4 of the 7, bit for bit (one sequence)" "py '$work' <<'EOF'
import sys, h5py, numpy as np
w = sys.argv[1]
def rows(d, files):
    out = {}
    for f in files:
        with h5py.File(f'{w}/{d}/{f}', 'r') as h:
            for i, s in enumerate(h['sample_index'][()]):
                out[int(s)] = (h['fields/log_nu'][i], h['fields/u_ref'][i])
    return out
full = rows('d1', ['dataset_00000.h5', 'dataset_00001.h5', 'dataset_00002.h5'])
part = rows('slice', ['dataset_00000.h5'])
assert sorted(part) == [2**42 + i for i in (2, 3, 4)], sorted(part)
assert all((full[s][0] == part[s][0]).all() and (full[s][1] == part[s][1]).all() for s in part)
EOF"

mpi_run d3d 2 dataset "$root/input_decks/poisson3d_32.yaml" problem.resolution=8 output.dir="$work/d3d" --samples 3
check "poisson3d: one shard of [3, 8, 8, 8] chunked per sample" \
  "py '$work/d3d/dataset_00000.h5' <<'EOF'
import sys, h5py
with h5py.File(sys.argv[1], 'r') as f:
    assert f['fields/u_ref'].shape == (3, 8, 8, 8) and f['fields/u_ref'].chunks == (1, 8, 8, 8)
EOF"
mpi_run dburgers 2 dataset "$root/input_decks/burgers1d_128.yaml" problem.resolution=16 problem.time_resolution=16 \
  output.dir="$work/dburgers" --samples 3
check "burgers1d: the initial condition and u_ref on the 16 x 16 space-time grid" \
  "py '$work/dburgers/dataset_00000.h5' <<'EOF'
import sys, h5py
with h5py.File(sys.argv[1], 'r') as f:
    names = sorted(f['fields'])
    assert len(names) == 2 and 'u_ref' in names, names
    assert all(f['fields/' + n].shape == (3, 16, 16) for n in names), names
EOF"

"$PDEGEN" dataset "$deck" output.dir="$work/none" >"$work/nosamples.log" 2>&1
check "dataset without --samples: exit 2 naming the option" \
  "[ $? -eq 2 ] && grep -q 'pdegen dataset needs --samples N' '$work/nosamples.log'"
"$PDEGEN" solve "$deck" output.dir="$work/none" --samples 3 >"$work/wrongverb.log" 2>&1
check "--samples on another verb: exit 2" \
  "[ $? -eq 2 ] && grep -q -- \"--samples is an option of 'pdegen dataset'\" '$work/wrongverb.log'"

finish

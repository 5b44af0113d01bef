#!/usr/bin/env bash
# pdegen predict --tile on grids that also fit whole: a tiny trained 2D U-Net at 128^2 in tiles of 32
# and a 3D one at 32^3 in tiles of 16, on 1 and 2 ranks. With the automatic halo, predict.h5's
# prediction equals the whole-domain run's to 1e-5 of its scale (the coefficient and reference bit
# for bit); a halo below the receptive field warns with the error it measured and differs
# measurably; --no-reference writes no reference; predict.json carries the tile figures; ParaView
# opens the tiled 3D predict.xdmf (skipped without pvpython).
#   PDEGEN=build/cpu/pdegen PDEGEN_MPIEXEC=mpiexec.mpich bash tests/mpi/test_predict_tiles.sh
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

# diff_of A B DATASET: max |a - b| / max(1, max |b|) of one dataset in two files ("inf" if shapes differ).
diff_of() {
  "$PYTHON" - "$@" <<'EOF'
import sys
import h5py
import numpy as np
a, b, name = sys.argv[1:4]
with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
    x, y = fa[name][()].astype(np.float64), fb[name][()].astype(np.float64)
print("inf" if x.shape != y.shape else np.abs(x - y).max() / max(1.0, np.abs(y).max()))
EOF
}
at_most() { "$PYTHON" -c "import sys; sys.exit(0 if float('$1') <= float('$2') else 1)"; }
json_has() { grep -q "\"$2\": $3" "$1/predict.json"; }

# check_tiled LABEL WHOLE TILED: the tiled run's fields against the whole-domain run's.
check_tiled() {
  local label=$1 whole=$2/predict.h5 tiled=$3/predict.h5 d
  d=$(diff_of "$tiled" "$whole" /fields/u_pred)
  check "$label: u_pred equals the whole domain's to 1e-5 (measured $d)" "at_most '$d' 1e-5"
  check "$label: the coefficient and u_ref are the whole domain's, bit for bit" \
    "h5diff '$tiled' '$whole' /fields/log_nu /fields/log_nu >/dev/null && h5diff '$tiled' '$whole' /fields/u_ref /fields/u_ref >/dev/null"
  d=$(diff_of "$tiled" "$whole" /fields/error)
  check "$label: the error field equals the whole domain's to 1e-5" "at_most '$d' 1e-5"
}

# ---- 2D: tiny.yaml (depth 2: receptive field 9, alignment 2) at 128^2 in tiles of 32 ----------
deck="$root/tests/decks/tiny.yaml"
big=(problem.resolution=128 evaluation.samples=3)
if mpi_run train2d 1 train "$deck" output.dir="$work/t2d"; then
  ck="$work/t2d/checkpoints/step_00000006.h5"
  mpi_run whole2d 1 predict "$deck" "${big[@]}" output.dir="$work/w2d" --checkpoint "$ck"
  for np in 1 2; do
    if mpi_run tiles2d_p$np $np predict "$deck" "${big[@]}" output.dir="$work/p2d_$np" --checkpoint "$ck" \
      --tile 32 --tile-batch 3; then
      check_tiled "2D on $np rank(s)" "$work/w2d" "$work/p2d_$np"
      check "2D on $np rank(s): predict.json has tiles 16, halo 10, receptive field 9, the figures" \
        "json_has '$work/p2d_$np' tiles 16 && json_has '$work/p2d_$np' halo 10 && json_has '$work/p2d_$np' receptive_field_halo 9 && json_has '$work/p2d_$np' window '\"52x52\"' && grep -q peak_rss_mb '$work/p2d_$np/predict.json' && grep -q write_seconds '$work/p2d_$np/predict.json'"
      check "2D on $np rank(s): no warning with the automatic halo" "! grep -q 'below the network' '$work/tiles2d_p$np.log'"
    fi
  done
  if mpi_run short2d 2 predict "$deck" "${big[@]}" output.dir="$work/s2d" --checkpoint "$ck" --tile 32 --halo 2; then
    d=$(diff_of "$work/s2d/predict.h5" "$work/w2d/predict.h5" /fields/u_pred)
    check "2D, --halo 2 < receptive field 9: differs from the whole domain by more than 1e-5 (measured $d)" \
      "! at_most '$d' 1e-5"
    check "2D, --halo 2: a warning names the measured error" \
      "grep -q 'warning.*--halo 2 is below the network.s receptive field (9 nodes.*max abs difference [0-9.e+-]*, relative L2' '$work/short2d.log'"
    check "2D, --halo 2: predict.json parses and every field has its type" \
      "'$PYTHON' '$root/tests/decks/check_json_types.py' predict '$work/s2d/predict.json'"
    check "2D, --halo 2: predict.json has the measured error" \
      "grep -Eq '\"halo_error_max_abs\": [0-9.]*[1-9]' '$work/s2d/predict.json' && grep -q halo_error_rel_l2 '$work/s2d/predict.json'"
  fi
  if mpi_run noref2d 2 predict "$deck" "${big[@]}" output.dir="$work/n2d" --checkpoint "$ck" --tile 32 --no-reference; then
    d=$(diff_of "$work/n2d/predict.h5" "$work/w2d/predict.h5" /fields/u_pred)
    check "2D, --no-reference: u_pred equals the whole domain's, no u_ref, no error, no rel_l2" \
      "at_most '$d' 1e-5 && ! h5ls '$work/n2d/predict.h5/fields' | grep -q u_ref && ! grep -q rel_l2 '$work/n2d/predict.json'"
  fi
fi

# ---- 3D: one convolution per level (receptive field 5, halo 6) at 32^3 in tiles of 16 ----------
deck="$root/input_decks/poisson3d_32.yaml"
small=(problem.resolution=16 network.depth=2 network.convs_per_level=1 network.base_channels=4
  training.batch_size=2 training.steps=3 training.log_every=1 evaluation.every=0 evaluation.samples=2
  output.field_samples=2)
if mpi_run train3d 1 train "$deck" "${small[@]}" output.dir="$work/t3d"; then
  ck="$work/t3d/checkpoints/step_00000003.h5"
  mpi_run whole3d 1 predict "$deck" "${small[@]}" problem.resolution=32 output.dir="$work/w3d" --checkpoint "$ck"
  for np in 1 2; do
    if mpi_run tiles3d_p$np $np predict "$deck" "${small[@]}" problem.resolution=32 output.dir="$work/p3d_$np" \
      --checkpoint "$ck" --tile 16; then
      check_tiled "3D on $np rank(s)" "$work/w3d" "$work/p3d_$np"
      check "3D on $np rank(s): 8 tiles in windows of 28^3 (cut from the 32^3 domain)" \
        "json_has '$work/p3d_$np' tiles 8 && json_has '$work/p3d_$np' window '\"28x28x28\"'"
    fi
  done
  if command -v pvpython >/dev/null && [ -f "$work/p3d_2/predict.xdmf" ]; then
    pv=(pvpython)
    command -v xvfb-run >/dev/null && pv=(xvfb-run -a pvpython)
    if timeout 300 "${pv[@]}" "$root/tools/paraview_check.py" "$work/p3d_2/predict.xdmf" >"$work/pv.log" 2>&1 &&
      grep -q "dimensions (32, 32, 32)" "$work/pv.log"; then
      pass "ParaView opens the tiled 3D predict.xdmf: every field, dimensions (32, 32, 32)"
    else
      fail "ParaView opens the tiled 3D predict.xdmf" "$(tail -n 5 "$work/pv.log" | tr '\n' ' ')"
    fi
  else
    echo "(ParaView check not run: no pvpython)"
  fi
fi
finish

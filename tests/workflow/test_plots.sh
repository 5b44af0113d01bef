#!/usr/bin/env bash
# tools/plot on real runs of tests/decks/tiny.yaml: the history of two runs (one restarted halfway)
# and the field panels are PNGs that are not trivial (size, distinct colours); the wall-time axis
# continues across a restart; a synthetic fields file (u_pred = x, u_ref = y on a 32 x 20 grid)
# comes out with x to the right and y up; 3D files plot a z slice; bad arguments exit 2.
#   PDEGEN=build/cpu/pdegen bash tests/workflow/test_plots.sh   (from the repository root)
set -u
repo="$(cd "$(dirname "$0")/../.." && pwd)"
PDEGEN="${PDEGEN:-$repo/build/cpu/pdegen}"
PYTHON="${PYTHON:-/usr/bin/python3}"
source "$repo/tests/lib.sh"
require_pdegen
if ! "$PYTHON" -c 'import matplotlib, h5py, numpy' 2>/dev/null; then
  skip "$PYTHON lacks matplotlib, h5py or numpy (tools/install_deps.sh --plots)"
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export MPLCONFIGDIR="$work/mpl"
plot() { "$PYTHON" "$repo/tools/plot" "$@"; }
png() {
  "$PYTHON" "$repo/tests/workflow/png_check.py" "$@" >"$work/png.out" 2>&1
  local rc=$?
  sed 's/^/      | /' "$work/png.out"
  return $rc
}

deck="$repo/tests/decks/tiny.yaml"
"$PDEGEN" train "$deck" output.dir="$work/a" training.steps=12 evaluation.every=4 >"$work/a.log" 2>&1 &&
  "$PDEGEN" train "$deck" output.dir="$work/b" training.steps=6 evaluation.every=4 optimizer.lr=1e-2 >"$work/b1.log" 2>&1 &&
  "$PDEGEN" train "$deck" output.dir="$work/b" training.steps=12 evaluation.every=4 optimizer.lr=1e-2 \
    training.restart=latest >"$work/b2.log" 2>&1
check "two tiny runs (one restarted at step 6) complete" "[ $? -eq 0 ]"

plot history "$work/a" "$work/b/history.csv" -o "$work/history.png" --labels "lr 1e-3,lr 1e-2" >"$work/h.log" 2>&1
check "plot history of two runs (a run directory and a history.csv) exits 0" "[ $? -eq 0 ]"
check "history.png is a real picture (>= 30 KiB, >= 200 colours)" "png '$work/history.png' --min-kb 30 --min-colours 200"
# A restarted process's clock starts again at 0: the plot's wall time must go on from the last row
# written before the restart (here 3.0 s, so 0.5 and 1.5 become 3.5 and 4.5).
printf 'step,wall_s,loss,lr,grad_norm,rel_l2_mean,rel_l2_max,samples_per_s,gflops\n1,1.0,3,1,1,,,1,1\n2,2.0,2,1,1,0.5,0.6,1,1\n3,3.0,1.5,1,1,,,1,1\n4,0.5,1.2,1,1,0.4,0.5,1,1\n5,1.5,1.0,1,1,,,1,1\n' \
  >"$work/restarted.csv"
check "the wall-time axis continues across a restart" \
  "'$PYTHON' - '$repo/tools/plot' '$work/restarted.csv' <<'PY'
import importlib.machinery, importlib.util, sys
loader = importlib.machinery.SourceFileLoader('plot_tool', sys.argv[1])
spec = importlib.util.spec_from_loader('plot_tool', loader)
tool = importlib.util.module_from_spec(spec)
loader.exec_module(tool)
_, c = tool.read_history(sys.argv[2])
sys.exit(list(c['wall_s']) != [1.0, 2.0, 3.0, 3.5, 4.5])
PY"
plot history "$work/a" -o "$work/bad.png" --labels "x,y" >/dev/null 2>"$work/bad.log"
check "plot history with a label count that does not match: exit 2" "[ $? -eq 2 ] && grep -q '2 labels for 1 runs' '$work/bad.log'"

plot fields "$work/a" -o "$work/fields.png" >"$work/f.log" 2>&1
check "plot fields of a run (2 samples x 4 fields) exits 0" "[ $? -eq 0 ] && grep -q '2 sample(s) x 4 field(s)' '$work/f.log'"
check "fields.png is a real picture (>= 30 KiB, >= 200 colours)" "png '$work/fields.png' --min-kb 30 --min-colours 200"
plot fields "$work/a/fields.h5" --samples 1 --fields u_ref,error -o "$work/fields1.png" >/dev/null 2>&1
check "plot fields of chosen samples and fields from the .h5 file" "[ $? -eq 0 ] && png '$work/fields1.png' --min-kb 10"
plot fields "$work/a" --samples 7 -o "$work/bad.png" >/dev/null 2>"$work/bad.log"
check "a sample that is not in the file: exit 2" "[ $? -eq 2 ] && grep -q 'sample 7 not in 0..1' '$work/bad.log'"
plot fields "$work/a" --fields nope -o "$work/bad.png" >/dev/null 2>"$work/bad.log"
check "a field that is not in the file: exit 2 listing the fields" "[ $? -eq 2 ] && grep -q 'log_nu, u_pred, u_ref, error' '$work/bad.log'"

# Orientation: the file stores x fastest; the panels must show x to the right and y up.
"$PYTHON" - "$work" <<'PY'
import sys
import h5py
import numpy as np
nx, ny, nz = 32, 20, 6
x = np.arange(nx) / (nx - 1)
y = 0.6 * np.arange(ny) / (ny - 1)
X, Y = np.meshgrid(x, y)  # [ny, nx]: x fastest
with h5py.File(sys.argv[1] + "/synthetic.h5", "w") as f:
    f["fields/u_pred"] = X[None].astype("f4")
    f["fields/u_ref"] = Y[None].astype("f4")
    f.attrs["origin"] = [0.0, 0.0]
    f.attrs["spacing"] = [1 / (nx - 1), 0.6 / (ny - 1)]
    f.attrs["pde"] = "poisson2d"
with h5py.File(sys.argv[1] + "/synthetic3d.h5", "w") as f:
    f["fields/u_pred"] = np.broadcast_to(X, (nz, ny, nx))[None].astype("f4")
    f.attrs["origin"] = [0.0, 0.0, 0.0]
    f.attrs["spacing"] = [1 / (nx - 1), 0.6 / (ny - 1), 0.2]
PY
plot fields "$work/synthetic.h5" --fields u_pred -o "$work/x.png" >/dev/null 2>&1 &&
  plot fields "$work/synthetic.h5" --fields u_ref -o "$work/y.png" >/dev/null 2>&1
check "synthetic fields plot" "[ $? -eq 0 ]"
check "a field growing with x grows to the right" "png '$work/x.png' --min-kb 5 --ramp x+"
check "... and is constant along y" "! png '$work/x.png' --min-kb 5 --ramp y+ >/dev/null && ! png '$work/x.png' --min-kb 5 --ramp y- >/dev/null"
check "a field growing with y grows upwards" "png '$work/y.png' --min-kb 5 --ramp y+"
plot fields "$work/synthetic3d.h5" -o "$work/z.png" >"$work/z.log" 2>&1
check "3D fields: a z slice, x to the right" "[ $? -eq 0 ] && png '$work/z.png' --min-kb 5 --ramp x+"

# Space-time fields (burgers1d): the x-t panels (t up) and u(x) profiles at several times.
"$PDEGEN" train "$repo/input_decks/burgers1d_128.yaml" problem.resolution=16 problem.time_resolution=16 \
  network.depth=2 network.base_channels=8 training.steps=4 evaluation.every=0 evaluation.samples=2 output.field_samples=2 \
  output.dir="$work/burgers" >"$work/burgers.log" 2>&1
check "a tiny burgers1d run completes" "[ $? -eq 0 ]"
plot fields "$work/burgers" -o "$work/bfields.png" >"$work/bf.log" 2>&1
check "plot fields of a burgers1d run: u0, u_pred, u_ref, error as x-t images" \
  "[ $? -eq 0 ] && grep -q '2 sample(s) x 4 field(s)' '$work/bf.log' && png '$work/bfields.png' --min-kb 20"
plot profiles "$work/burgers" --times 0,0.25,0.5 -o "$work/profiles.png" >"$work/bp.log" 2>&1
check "plot profiles: u(x) at 3 times for 2 samples" \
  "[ $? -eq 0 ] && grep -q '2 sample(s) x 3 time(s)' '$work/bp.log' && png '$work/profiles.png' --min-kb 20 --min-colours 50"
plot profiles "$work/a" -o "$work/bad.png" >/dev/null 2>"$work/bad.log"
check "plot profiles of a poisson run: exit 2 naming what it needs" \
  "[ $? -eq 2 ] && grep -q 'not a space-time (burgers1d) fields file' '$work/bad.log'"

finish

#!/usr/bin/env bash
# poisson3d end to end on a 16^3 grid (a small 3D U-Net, a few steps): train prints rel_l2 mean/max
# and writes summary.json, checkpoints and a 3D fields file; 3 + restart + 3 steps equal 6 steps bit
# for bit (parameters and optimizer state, h5diff -d 0); the same deck on 2 and 3 ranks follows the
# 1-rank loss trajectory to 1e-5 (only the order of fp32 sums changes, as in test_trajectories.sh);
# `solve` and `predict` run on it; ParaView's default reader opens fields.xdmf as a 3D volume with
# every field, dimensions (Nx, Ny, Nz) and x fastest (skipped without pvpython).
#   PDEGEN=build/cpu/pdegen PDEGEN_MPIEXEC=mpiexec.mpich bash tests/mpi/test_poisson3d.sh
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

deck="$root/input_decks/poisson3d_32.yaml"
small=(problem.resolution=16 network.depth=2 training.batch_size=6 training.log_every=1 evaluation.every=0
  evaluation.samples=3 output.field_samples=2 parallel.consistency_every=1 optimizer.schedule.type=constant)

if mpi_run p1 1 train "$deck" "${small[@]}" training.steps=6 output.dir="$work/p1"; then
  check "train prints rel_l2 mean and max" "grep -q 'rel_l2 mean .* max ' '$work/p1.log'"
  check "summary.json: completed, pde poisson3d, finite rel_l2" \
    "grep -q '\"status\": \"completed\"' '$work/p1/summary.json' && grep -q '\"pde\": \"poisson3d\"' '$work/p1/summary.json' && ! grep -q 'rel_l2_mean\": null' '$work/p1/summary.json'"
  check "fields.h5 holds [N, Nz, Ny, Nx] fields" \
    "h5ls '$work/p1/fields.h5/fields/u_pred' | grep -q '{2, 16, 16, 16}'"
fi

# Restart: 3 steps, then 3 more from the checkpoint, against the 6-step run.
if mpi_run r3 1 train "$deck" "${small[@]}" training.steps=3 output.dir="$work/r" &&
  mpi_run r6 1 train "$deck" "${small[@]}" training.steps=6 output.dir="$work/r" training.restart=latest; then
  a="$work/p1/checkpoints/step_00000006.h5" b="$work/r/checkpoints/step_00000006.h5"
  check "3 + restart + 3 steps = 6 steps bit for bit (parameters)" \
    "h5diff -d 0 '$a' '$b' /parameters /parameters >/dev/null 2>&1"
  check "3 + restart + 3 steps = 6 steps bit for bit (optimizer state)" \
    "h5diff '$a' '$b' /optimizer_state /optimizer_state >/dev/null 2>&1"
fi

for np in 2 3; do
  if mpi_run p$np $np train "$deck" "${small[@]}" training.steps=6 output.dir="$work/p$np"; then
    if "$PYTHON" "$here/compare_history.py" --tol 1e-5 --rows 6 --label "poisson3d P=$np" \
      "$work/p1/history.csv" "P=$np:$work/p$np/history.csv"; then
      pass "poisson3d on $np ranks follows the 1-rank loss trajectory to 1e-5"
    else
      fail "poisson3d on $np ranks follows the 1-rank loss trajectory to 1e-5"
    fi
  fi
done

if mpi_run solve 2 solve "$deck" "${small[@]}" output.dir="$work/solve"; then
  check "solve writes reference.h5 with 3 samples of 16^3" \
    "h5ls '$work/solve/reference.h5/fields/u_ref' | grep -q '{3, 16, 16, 16}'"
  check "solve names the 3D grid it solved on" "grep -q 'reference solutions of poisson3d on the 16x16x16 grid' '$work/solve.log'"
fi
if mpi_run predict 1 predict "$deck" "${small[@]}" output.dir="$work/predict" \
  --checkpoint "$work/p1/checkpoints/step_00000006.h5"; then
  check "predict reports rel_l2 against the reference" "grep -q 'rel_l2_mean' '$work/predict/predict.json'"
fi

if command -v pvpython >/dev/null && [ -f "$work/p1/fields.xdmf" ]; then
  pv=(pvpython)
  command -v xvfb-run >/dev/null && pv=(xvfb-run -a pvpython)
  if timeout 300 "${pv[@]}" "$root/tools/paraview_check.py" "$work/p1/fields.xdmf" >"$work/pv.log" 2>&1 &&
    grep -q "dimensions (16, 16, 16)" "$work/pv.log"; then
    pass "ParaView opens the 3D fields.xdmf: every field, dimensions (16, 16, 16), x fastest"
  else
    fail "ParaView opens the 3D fields.xdmf" "$(tail -n 5 "$work/pv.log" | tr '\n' ' ')"
  fi
else
  echo "(ParaView check not run: no pvpython)"
fi
finish

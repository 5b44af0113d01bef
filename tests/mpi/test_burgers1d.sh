#!/usr/bin/env bash
# burgers1d end to end on a 16 x 16 space-time grid (a small U-Net, a few steps), viscous and
# inviscid: train prints rel_l2 mean/max against the finite-volume reference and writes a fields
# file of [N, Nt, Nx] images; 3 + restart + 3 steps equal 6 steps bit for bit (parameters and
# optimizer state); the same deck on 2, 3 and 4 ranks follows the 1-rank loss trajectory to 1e-5 (only
# the order of fp32 sums changes, as in test_trajectories.sh); `solve` and `predict` run on it; the
# Galerkin loss on the inviscid deck and the penalty boundary train too; ParaView shows the fields
# as x-t images (x right, t up; skipped without pvpython).
#   PDEGEN=build/cpu/pdegen PDEGEN_MPIEXEC=mpiexec.mpich bash tests/mpi/test_burgers1d.sh
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

small=(problem.resolution=16 problem.time_resolution=16 network.depth=2 network.base_channels=8
  training.batch_size=6 training.log_every=1 evaluation.every=0 evaluation.samples=3 output.field_samples=2
  parallel.consistency_every=1 "optimizer.schedule={type: constant}")

for deck in burgers1d_128 burgers1d_inviscid_128; do
  d="$root/input_decks/$deck.yaml"
  if mpi_run "$deck-p1" 1 train "$d" "${small[@]}" training.steps=6 output.dir="$work/$deck-p1"; then
    check "$deck: train prints rel_l2 mean and max" "grep -q 'rel_l2 mean .* max ' '$work/$deck-p1.log'"
    check "$deck: summary.json: completed, pde burgers1d, finite rel_l2" \
      "grep -q '\"status\": \"completed\"' '$work/$deck-p1/summary.json' && grep -q '\"pde\": \"burgers1d\"' '$work/$deck-p1/summary.json' && ! grep -q 'rel_l2_mean\": null' '$work/$deck-p1/summary.json'"
    check "$deck: fields.h5 holds [N, Nt, Nx] fields" \
      "h5ls '$work/$deck-p1/fields.h5/fields/u_pred' | grep -q '{2, 16, 16}'"
  fi
  if mpi_run "$deck-r3" 1 train "$d" "${small[@]}" training.steps=3 output.dir="$work/$deck-r" &&
    mpi_run "$deck-r6" 1 train "$d" "${small[@]}" training.steps=6 output.dir="$work/$deck-r" training.restart=latest; then
    a="$work/$deck-p1/checkpoints/step_00000006.h5" b="$work/$deck-r/checkpoints/step_00000006.h5"
    check "$deck: 3 + restart + 3 steps = 6 steps bit for bit (parameters and optimizer state)" \
      "h5diff -d 0 '$a' '$b' /parameters /parameters >/dev/null 2>&1 && h5diff '$a' '$b' /optimizer_state /optimizer_state >/dev/null 2>&1"
  fi
  for np in 2 3 4; do
    if mpi_run "$deck-p$np" $np train "$d" "${small[@]}" training.steps=6 output.dir="$work/$deck-p$np"; then
      if "$PYTHON" "$here/compare_history.py" --tol 1e-5 --rows 6 --label "$deck P=$np" \
        "$work/$deck-p1/history.csv" "P=$np:$work/$deck-p$np/history.csv"; then
        pass "$deck on $np ranks follows the 1-rank loss trajectory to 1e-5"
      else
        fail "$deck on $np ranks follows the 1-rank loss trajectory to 1e-5"
      fi
    fi
  done
done

d="$root/input_decks/burgers1d_128.yaml"
if mpi_run solve 2 solve "$d" "${small[@]}" output.dir="$work/solve"; then
  check "solve writes reference.h5 with 3 samples of 16 x 16" \
    "h5ls '$work/solve/reference.h5/fields/u_ref' | grep -q '{3, 16, 16}'"
  check "solve names the space-time grid it solved on" "grep -q 'reference solutions of burgers1d on the 16x16 grid' '$work/solve.log'"
fi
if mpi_run predict 1 predict "$d" "${small[@]}" output.dir="$work/predict" \
  --checkpoint "$work/burgers1d_128-p1/checkpoints/step_00000006.h5"; then
  check "predict reports rel_l2 against the reference" "grep -q 'rel_l2_mean' '$work/predict/predict.json'"
fi
inviscid="$root/input_decks/burgers1d_inviscid_128.yaml"
mpi_run galerkin 1 train "$inviscid" "${small[@]}" training.steps=3 problem.loss=residual output.dir="$work/galerkin" &&
  check "the Galerkin residual trains the inviscid deck too" "grep -q 'rel_l2 mean .* max ' '$work/galerkin.log'"
mpi_run penalty 1 train "$d" "${small[@]}" training.steps=3 problem.boundary=penalty output.dir="$work/penalty" &&
  check "the penalty boundary treatment trains" "grep -q 'rel_l2 mean .* max ' '$work/penalty.log'"
if command -v pvpython >/dev/null && [ -f "$work/burgers1d_128-p1/fields.xdmf" ]; then
  pv=(pvpython)
  command -v xvfb-run >/dev/null && pv=(xvfb-run -a pvpython)
  if timeout 300 "${pv[@]}" "$root/tools/paraview_check.py" "$work/burgers1d_128-p1/fields.xdmf" >"$work/pv.log" 2>&1 &&
    grep -q "dimensions (16, 16, 1)" "$work/pv.log" && grep -q "bounds: x \[0, 1\], y \[0, 0.5\]" "$work/pv.log"; then
    pass "ParaView opens the burgers1d fields.xdmf as x-t images: x in [0, 1] to the right, t in [0, 0.5] up"
  else
    fail "ParaView opens the burgers1d fields.xdmf as x-t images" "$(tail -n 5 "$work/pv.log" | tr '\n' ' ')"
  fi
else
  echo "(ParaView check not run: no pvpython)"
fi
finish

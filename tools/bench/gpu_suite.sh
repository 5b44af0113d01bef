#!/usr/bin/env bash
# The GPU side-by-side benchmarks of docs/performance.md in one command: pdegen's CUDA backend against
# PyTorch on the same GPU, layer by layer and for whole poisson2d training runs, printed as markdown
# tables and written to ${OUT:-/tmp}/gpu_tables.md. Run from the repository root on a machine with a
# GPU and a CUDA build of the tree:
#   cmake --preset cuda -DCMAKE_CUDA_ARCHITECTURES=90 && cmake --build build/cuda -j --target pdegen bench_layers
#   tools/bench/gpu_suite.sh
# Environment: BUILD (default build/cuda; needs pdegen and bench_layers), PYTHON (an interpreter with
# torch built for CUDA, numpy, scipy and PyYAML; default python3), OUT (default /tmp), THREADS (host
# threads for both sides, default: the core count, at most 16), PARTS (default
# "layers layers_tf32 train256 train1024 precision"; any subset, in any order), REPS (layer repetitions, default 20),
# SMOKE=1 (every part on tiny shapes and a few steps: checks the whole pipeline in about a minute).
# About 5 minutes on one H100; each part also writes its table to $OUT/gpu_<part>.md as it finishes.
set -euo pipefail

BUILD=${BUILD:-build/cuda}
PYTHON=${PYTHON:-python3}
OUT=${OUT:-/tmp}
THREADS=${THREADS:-$(n=$(nproc); echo $((n < 16 ? n : 16)))}
PARTS=${PARTS:-layers layers_tf32 train256 train1024 precision}
REPS=${REPS:-20}
SMOKE=${SMOKE:-0}
# The shapes of the tables; SMOKE shrinks them (the same commands, so the smoke run tests the real path).
layer_shape=(--batch 16 --size 256 --reps "$REPS")
layer_filter=()
train256=(--steps 30 training.batch_size=16)
train1024=(--steps 10 training.batch_size=4 network.depth=6)
precision=(--steps 30 training.batch_size=16)
smoke=""
if [[ $SMOKE == 1 ]]; then
  smoke=" (SMOKE run: tiny shapes, not for the record)"
  layer_shape=(--batch 2 --size 64 --reps 2)
  layer_filter=(--filter "s1 16->")
  train256=(--steps 5 training.batch_size=2 problem.resolution=64)
  train1024=(--steps 5 training.batch_size=2 network.depth=4 problem.resolution=64)
  precision=(--steps 5 training.batch_size=2 problem.resolution=64)
fi
export PYTHON  # the compare scripts run the PyTorch peers under it

fail() {
  echo "gpu_suite: $*" >&2
  exit 1
}

[[ -f tools/bench/compare_layers.py ]] || fail "run from the repository root (tools/bench/compare_layers.py not found)"
for exe in pdegen bench_layers; do
  [[ -x $BUILD/$exe ]] || fail "$BUILD/$exe not found: build it with cmake --build $BUILD --target pdegen bench_layers"
done
versions=$("$BUILD/pdegen" --version 2>&1) || fail "$BUILD/pdegen --version failed: $versions"
cuda_line=$(grep -m 1 '^ *cuda' <<<"$versions" | sed 's/^ *//' || true)
case $cuda_line in
  "cuda ("*" on "*) ;;
  *) fail "$BUILD/pdegen cannot use a GPU: ${cuda_line:-no cuda line in pdegen --version} (configure with cmake --preset cuda)" ;;
esac
version="$(head -n 1 <<<"$versions"); $cuda_line"
"$PYTHON" -c 'import numpy, scipy, yaml, torch; assert torch.cuda.is_available(), "torch sees no CUDA device"' ||
  fail "$PYTHON needs torch with a visible CUDA device, numpy, scipy and PyYAML"
torch_version=$("$PYTHON" -c 'import torch; print(torch.__version__, "cuDNN", torch.backends.cudnn.version(), "on", torch.cuda.get_device_name())')
gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -n 1 || true)

mkdir -p "$OUT"
tables=$OUT/gpu_tables.md
work=$(mktemp -d "${TMPDIR:-/tmp}/gpu_suite.XXXXXX")
trap 'rm -rf "$work"' EXIT

{
  echo "# GPU benchmarks: pdegen against PyTorch ($(date -u '+%Y-%m-%d %H:%M UTC'))$smoke"
  echo
  echo "- machine: $(hostname), GPU: ${gpu:-unknown (no nvidia-smi)}, $(nproc) cores, host threads $THREADS"
  echo "- pdegen: $version ($BUILD)"
  echo "- PyTorch: $torch_version ($PYTHON)"
  echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with local changes)')"
} >"$tables"
echo >>"$tables"
cat "$tables"

# Runs one part: its title, the command (recorded with the table), its table to stdout and the file.
part() {
  local name=$1 title=$2
  shift 2
  local started=$SECONDS
  echo "## $title$smoke" | tee "$OUT/gpu_$name.md"
  {
    echo
    echo "    $(printf '%q ' "$@")"
    echo
  } | tee -a "$OUT/gpu_$name.md"
  if "$@" >"$work/$name.out" 2>"$work/$name.err"; then
    tee -a "$OUT/gpu_$name.md" <"$work/$name.out"
  else
    local rc=$?
    tail -n 30 "$work/$name.err" >&2
    echo "**failed** (exit code $rc; the last lines of its error output are above in the suite's log)" |
      tee -a "$OUT/gpu_$name.md"
    status=1
  fi
  echo "_($((SECONDS - started)) s)_" | tee -a "$OUT/gpu_$name.md"
  echo | tee -a "$OUT/gpu_$name.md"
  cat "$OUT/gpu_$name.md" >>"$tables"
}

status=0
for p in $PARTS; do
  case $p in
    layers)
      part layers "Layer micro-benchmark on the GPU (fp32, no TF32: both sides round alike)" \
        "$PYTHON" tools/bench/compare_layers.py --device cuda --bench "$BUILD/bench_layers" \
        --threads "$THREADS" "${layer_shape[@]}" "${layer_filter[@]}"
      ;;
    layers_tf32)
      part layers_tf32 "Convolutions on the GPU with TF32 (both sides; what training uses)" \
        "$PYTHON" tools/bench/compare_layers.py --device cuda --tf32 --filter conv --bench "$BUILD/bench_layers" \
        --threads "$THREADS" "${layer_shape[@]}"
      ;;
    train256)
      part train256 "poisson2d training on the GPU, 256x256, batch 16" \
        "$PYTHON" tools/bench/compare_train.py input_decks/poisson2d_256.yaml --device cuda \
        --pdegen "$BUILD/pdegen" --threads "$THREADS" --eval-only-at-end "${train256[@]}" \
        evaluation.samples=4 output.field_samples=1
      ;;
    train1024)
      part train1024 "poisson2d training on the GPU, 1024x1024, batch 4, depth 6" \
        "$PYTHON" tools/bench/compare_train.py input_decks/poisson2d_1024.yaml --device cuda \
        --pdegen "$BUILD/pdegen" --threads "$THREADS" --eval-only-at-end "${train1024[@]}" \
        evaluation.samples=1 output.field_samples=1
      ;;
    precision)
      part precision "pdegen on the GPU in fp32, bf16 and fp16 (poisson2d 256x256, batch 16)" \
        "$PYTHON" tools/bench/compare_precision.py input_decks/poisson2d_256.yaml --pdegen "$BUILD/pdegen" \
        "${precision[@]}" evaluation.samples=4 output.field_samples=1
      ;;
    *) fail "unknown part '$p' in PARTS (layers, layers_tf32, train256, train1024, precision)" ;;
  esac
done

echo "gpu_suite: tables in $tables" >&2
exit $status

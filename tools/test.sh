#!/usr/bin/env bash
# The README's second command (and CI's): set up, build and run the whole test suite.
#   1. the optimised CPU build (warnings are errors) and every ctest test in it;
#   2. where the CUDA toolkit is installed, the cuda preset compiled and linked (pdegen and the test
#      binaries; CI has no GPU, so nothing of it runs here; PDEGEN_SKIP_CUDA=1 leaves it out);
#   3. the AddressSanitizer + UBSan build and the unit tests under it.
#   4. (before 1) ParaView's python for the XDMF test, unless PDEGEN_SKIP_PARAVIEW=1.
# Skip the sanitizer stage with PDEGEN_SKIP_ASAN=1 (e.g. for a quick local run).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
jobs="$(nproc)"
# Tests run ranks and OpenMP threads side by side on few cores: keep them from fighting.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
# Passive waiting: spinning OpenMP threads steal the cores that other test processes need.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"

# ParaView's python (for the test that opens fields.xdmf with ParaView's own reader) and h5py;
# PDEGEN_SKIP_PARAVIEW=1 leaves it out (that test then reports itself skipped).
if [ "${PDEGEN_SKIP_PARAVIEW:-0}" != 1 ]; then
  tools/install_deps.sh --paraview --plots
fi
echo "== build (cpu preset)"
tools/build.sh cpu
echo "== format (.clang-format)"
git ls-files '*.cpp' '*.hpp' '*.cu' '*.cuh' | xargs clang-format --dry-run -Werror
echo "== tests (cpu preset)"
ctest --preset cpu -j "$jobs"

if [ -x /usr/local/cuda/bin/nvcc ] && [ "${PDEGEN_SKIP_CUDA:-0}" != 1 ]; then
  echo "== build (cuda preset: compile and link only, no GPU here)"
  cuda_start=$(date +%s)
  cmake --preset cuda >/dev/null
  # The executable and every unit-test binary, not the benchmarks.
  cuda_targets=(pdegen)
  for t in tests/unit/test_*.cpp; do
    name=$(basename "$t" .cpp)
    [ "$name" = test_main ] || cuda_targets+=("$name")
  done
  cmake --build --preset cuda -j "$jobs" --target "${cuda_targets[@]}"
  echo "== cuda build (archs $(sed -n 's/^CMAKE_CUDA_ARCHITECTURES:[A-Z]*=//p' build/cuda/CMakeCache.txt)) took $(( $(date +%s) - cuda_start )) s"
fi

if [ "${PDEGEN_SKIP_ASAN:-0}" != 1 ]; then
  echo "== build (asan preset)"
  tools/build.sh asan
  echo "== unit tests under AddressSanitizer + UBSan"
  ctest --preset asan -j "$jobs"
fi
echo "== all stages passed in $(( $(date +%s) - start )) s"

#!/usr/bin/env bash
# Installs the Debian packages pdegen builds and tests with, only those that are missing.
# Idempotent: on a machine that has everything it prints one line and changes nothing.
#   tools/install_deps.sh            build + test dependencies
#   tools/install_deps.sh --bench    also the PyTorch peer of the benchmarks: a virtual environment
#                                    (build/bench-venv, or $PDEGEN_BENCH_VENV) with the newest PyTorch
#                                    from PyPI, numpy, scipy, pyyaml (Debian's python3-torch 1.13 stays
#                                    as the fallback tools/bench/peer.py warns about)
#   tools/install_deps.sh --plots    also python3-matplotlib/h5py/yaml for tools/plot, tools/sweep, tools/collect
#   tools/install_deps.sh --paraview also ParaView's python (pvpython), xvfb and h5py for
#                                    tests/io/test_paraview.sh (pulls OpenMPI: use mpiexec.mpich)
set -euo pipefail
cd "$(dirname "$0")/.."
bench=0

pkgs=(mpich libmpich-dev libhdf5-mpich-dev hdf5-tools zlib1g-dev libyaml-cpp-dev libspdlog-dev libfmt-dev doctest-dev
      libdnnl-dev cmake g++ make pkg-config git python3 clang-format)
for arg in "$@"; do
  case "$arg" in
    --bench) pkgs+=(python3 python3-venv python3-pip python3-torch python3-numpy python3-scipy python3-yaml); bench=1 ;;
    --plots) pkgs+=(python3 python3-matplotlib python3-h5py python3-numpy python3-yaml) ;;
    --paraview) pkgs+=(python3-paraview xvfb python3-h5py hdf5-tools) ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "install_deps.sh: unknown option '$arg' (expected --bench, --plots or --paraview)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# The benchmark peer: what a user would pick today, in a virtual environment of its own.
bench_venv() {
  local venv="${PDEGEN_BENCH_VENV:-build/bench-venv}"
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    # PyPI's torch (with its CUDA libraries, about 5 GiB); $PDEGEN_TORCH_INDEX picks another index,
    # e.g. https://download.pytorch.org/whl/cpu for the CPU-only wheels where that host is reachable.
    local index="${PDEGEN_TORCH_INDEX:-}"
    "$venv/bin/python" -m pip install -q ${index:+--index-url "$index"} torch
    "$venv/bin/python" -m pip install -q numpy scipy pyyaml
  fi
  echo "install_deps.sh: benchmark peer $venv: torch $("$venv/bin/python" -c 'import torch; print(torch.__version__)')"
}

if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps.sh: all ${#pkgs[@]} packages present"
  [ "$bench" = 0 ] || bench_venv
  exit 0
fi
echo "install_deps.sh: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install_deps.sh: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
[ "$bench" = 0 ] || bench_venv

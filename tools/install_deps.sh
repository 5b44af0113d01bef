#!/usr/bin/env bash
# Installs the Debian packages pdegen builds and tests with, only those that are missing.
# Idempotent: on a machine that has everything it prints one line and changes nothing.
#   tools/install_deps.sh            build + test dependencies
#   tools/install_deps.sh --bench    also python3-torch/numpy/scipy/yaml for the PyTorch comparison benchmarks
#   tools/install_deps.sh --plots    also python3-matplotlib/h5py/yaml for tools/plot, tools/sweep, tools/collect
#   tools/install_deps.sh --paraview also ParaView's python (pvpython), xvfb and h5py for
#                                    tests/io/test_paraview.sh (pulls OpenMPI: use mpiexec.mpich)
set -euo pipefail

pkgs=(mpich libmpich-dev libhdf5-mpich-dev hdf5-tools zlib1g-dev libyaml-cpp-dev libspdlog-dev libfmt-dev doctest-dev
      libdnnl-dev cmake g++ make pkg-config git python3 clang-format)
for arg in "$@"; do
  case "$arg" in
    --bench) pkgs+=(python3 python3-torch python3-numpy python3-scipy python3-yaml) ;;
    --plots) pkgs+=(python3 python3-matplotlib python3-h5py python3-numpy python3-yaml) ;;
    --paraview) pkgs+=(python3-paraview xvfb python3-h5py hdf5-tools) ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "install_deps.sh: unknown option '$arg' (expected --bench, --plots or --paraview)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps.sh: all ${#pkgs[@]} packages present"
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

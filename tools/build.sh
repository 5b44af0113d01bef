#!/usr/bin/env bash
# Configures and builds one CMake preset (default: cpu), installing missing Debian packages first.
#   tools/build.sh [PRESET] [extra cmake --build args]
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-cpu}"
shift || true
tools/install_deps.sh
jobs="$(nproc)"
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j "$jobs" "$@"

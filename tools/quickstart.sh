#!/usr/bin/env bash
# The README's first command: set up, build, and run the main job on the default deck.
#   tools/quickstart.sh [key.path=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
tools/build.sh cpu --target pdegen
build/cpu/pdegen check input_decks/quickstart.yaml "$@"
# Run again, the main job trains afresh: an earlier run in runs/quickstart is moved aside
# (runs/quickstart.<date>-<time>), never overwritten.
exec build/cpu/pdegen train input_decks/quickstart.yaml output.existing=move_aside "$@"

#!/usr/bin/env bash
# A parameter sweep end to end: tools/sweep writes 3 decks (a log-range grid over optimizer.lr on
# tests/decks/tiny.yaml), a manifest and Slurm/LSF job arrays; one point runs through the Slurm array
# script (no scheduler here), the rest through `tools/sweep run`; tools/collect gathers the 3 runs
# into a CSV and a markdown table sorted by rel_l2. Also: random sweeps are reproducible and stay in
# their ranges, and a point that does not validate stops `make` naming its deck.
#   PDEGEN=build/cpu/pdegen bash tests/workflow/test_sweep.sh   (from the repository root)
set -u
repo="$(cd "$(dirname "$0")/../.." && pwd)"
PDEGEN="${PDEGEN:-$repo/build/cpu/pdegen}"
PYTHON="${PYTHON:-/usr/bin/python3}"
source "$repo/tests/lib.sh"
require_pdegen
if ! "$PYTHON" -c 'import yaml' 2>/dev/null; then
  skip "$PYTHON has no yaml module (tools/install_deps.sh --plots installs python3-yaml)"
fi
PDEGEN="$(cd "$(dirname "$PDEGEN")" && pwd)/$(basename "$PDEGEN")"
export PDEGEN
unset SLURM_JOB_ID SLURM_ARRAY_TASK_ID LSB_JOBID LSB_JOBINDEX PDEGEN_RUNS PDEGEN_RUN_DIR PDEGEN_JOB_NAME PDEGEN_RANKS
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
py() { "$PYTHON" -c "$@"; }

cat >"$work/lr.yaml" <<EOF
base: $repo/tests/decks/tiny.yaml
name: lr
set:
  training.steps: 4
  evaluation.every: 2
grid:
  optimizer.lr: {log_range: [1e-4, 1e-2], num: 3}
jobs:
  nodes: 2
  time: "00:30:00"
  max_parallel: 2
  slurm: ["--partition=debug"]
EOF
sweep="$work/sweep"
(cd "$work" && "$PYTHON" "$repo/tools/sweep" make lr.yaml -o "$sweep" >"$work/make.log" 2>&1)
check "make exits 0 and validates every deck" "[ $? -eq 0 ] && grep -q 'every deck validated' '$work/make.log'"
check "one deck per point" "[ \$(ls '$sweep/decks' | wc -l) -eq 3 ]"
check "manifest.csv: header and 3 points with their lr" \
  "[ \"\$(cat '$sweep/manifest.csv')\" = \"\$(printf 'index,point,deck,run_dir,optimizer.lr\n1,p001,decks/p001.yaml,runs/p001,0.0001\n2,p002,decks/p002.yaml,runs/p002,0.001\n3,p003,decks/p003.yaml,runs/p003,0.01')\" ]"
check "each deck is the base deck with its value, the fixed overrides and its own output.dir" \
  "py 'import yaml,sys; d=yaml.safe_load(open(sys.argv[1])); sys.exit(not (d[\"optimizer\"][\"lr\"] == 0.01 and d[\"training\"][\"steps\"] == 4 and d[\"evaluation\"][\"every\"] == 2 and d[\"output\"][\"dir\"] == \"runs/p003\" and d[\"network\"][\"base_channels\"] == 4))' '$sweep/decks/p003.yaml'"
check "decks are valid for pdegen" "(cd '$sweep' && '$PDEGEN' check decks/p002.yaml >/dev/null)"
for f in slurm_array.sbatch lsf_array.lsf; do
  check "$f passes bash -n" "bash -n '$sweep/$f'"
done
check "Slurm array: --array=1-3%2, 2 nodes, 30 minutes, the extra option" \
  "grep -q '^#SBATCH --array=1-3%2$' '$sweep/slurm_array.sbatch' && grep -q '^#SBATCH --nodes=2$' '$sweep/slurm_array.sbatch' && grep -q '^#SBATCH --time=00:30:00$' '$sweep/slurm_array.sbatch' && grep -q '^#SBATCH --partition=debug$' '$sweep/slurm_array.sbatch'"
check "LSF array: -J \"lr[1-3]%2\", -nnodes 2, -W 30" \
  "grep -q '^#BSUB -J \"lr\\[1-3\\]%2\"$' '$sweep/lsf_array.lsf' && grep -q '^#BSUB -nnodes 2$' '$sweep/lsf_array.lsf' && grep -q '^#BSUB -W 30$' '$sweep/lsf_array.lsf'"

# Point 2 as Slurm's array task 2 would run it (no scheduler: the job script runs it here).
(cd "$work" && SLURM_ARRAY_TASK_ID=2 bash "$sweep/slurm_array.sbatch" >"$work/task2.log" 2>&1)
check "the Slurm array script runs point 2 into runs/p002" \
  "[ $? -eq 0 ] && grep -q 'lr_p002 .*run directory runs/p002' '$work/task2.log' && [ -s '$sweep/runs/p002/summary.json' ]"
(cd "$work" && LSB_JOBINDEX=2 bash "$sweep/lsf_array.lsf" >"$work/task2_lsf.log" 2>&1)
check "the LSF array script finds point 2 already completed" "[ $? -eq 0 ] && grep -q 'already completed' '$work/task2_lsf.log'"
"$PYTHON" "$repo/tools/sweep" run "$sweep" >"$work/run.log" 2>&1
check "tools/sweep run runs the other points here and skips the completed one" \
  "[ $? -eq 0 ] && grep -q 'p002 already completed' '$work/run.log' && grep -q '3 of 3 points ran to completion' '$work/run.log'"
for p in p001 p002 p003; do
  check "$p completed 4 steps with its own lr" \
    "py 'import json,yaml,sys; s=json.load(open(sys.argv[1]+\"/summary.json\")); d=yaml.safe_load(open(sys.argv[1]+\"/deck.resolved.yaml\")); sys.exit(not (s[\"status\"] == \"completed\" and s[\"steps\"] == 4 and d[\"optimizer\"][\"lr\"] == {\"p001\": 1e-4, \"p002\": 1e-3, \"p003\": 1e-2}[\"$p\"]))' '$sweep/runs/$p' 2>/dev/null"
done

"$PYTHON" "$repo/tools/collect" "$sweep" >"$work/collect.log" 2>&1
check "collect exits 0 and writes results.csv and results.md" \
  "[ $? -eq 0 ] && [ -s '$sweep/results.csv' ] && [ -s '$sweep/results.md' ]"
check "results.csv: 3 runs, the swept key's values, sorted by eval.rel_l2_mean ascending" \
  "py 'import csv,sys; r=list(csv.DictReader(open(sys.argv[1]))); v=[float(x[\"eval.rel_l2_mean\"]) for x in r]; sys.exit(not (len(r) == 3 and v == sorted(v) and sorted(float(x[\"optimizer.lr\"]) for x in r) == [1e-4, 1e-3, 1e-2] and all(x[\"status\"] == \"completed\" for x in r) and {x[\"run\"] for x in r} == {\"runs/p001\", \"runs/p002\", \"runs/p003\"}))' '$sweep/results.csv'"
check "results.md: a table with a row per run" \
  "[ \$(grep -c '^| [0-9] | runs/p00' '$sweep/results.md') -eq 3 ] && grep -q '| optimizer.lr |' '$sweep/results.md'"
"$PYTHON" "$repo/tools/collect" "$sweep" --sort final_loss --descending -o "$work/by_loss" >/dev/null 2>&1
check "collect --sort final_loss --descending orders by that column" \
  "py 'import csv,sys; v=[float(x[\"final_loss\"]) for x in csv.DictReader(open(sys.argv[1]))]; sys.exit(not (len(v) == 3 and v == sorted(v, reverse=True)))' '$work/by_loss.csv'"
"$PYTHON" "$repo/tools/collect" "$sweep" --sort no.such.column >/dev/null 2>"$work/badsort.log"
check "collect --sort of an unknown column: exit 2 listing the columns" "[ $? -eq 2 ] && grep -q 'columns are:' '$work/badsort.log'"

# Random sweeps: the same seed gives the same points; values stay in their ranges.
cat >"$work/rand.yaml" <<EOF
base: $repo/tests/decks/tiny.yaml
random:
  points: 6
  seed: 3
  keys:
    optimizer.lr: {log_range: [1e-4, 1e-2]}
    training.batch_size: {range: [2, 8], int: true}
    network.activation: [relu, silu]
EOF
(cd "$work" && "$PYTHON" "$repo/tools/sweep" make rand.yaml -o r1 >/dev/null 2>&1 && "$PYTHON" "$repo/tools/sweep" make rand.yaml -o r2 --no-check >/dev/null 2>&1)
check "random sweep: 6 decks, reproducible from its seed" \
  "[ \$(ls '$work/r1/decks' | wc -l) -eq 6 ] && cmp -s '$work/r1/manifest.csv' '$work/r2/manifest.csv'"
check "random sweep: values inside their ranges, integers for int keys" \
  "py 'import csv,sys; r=list(csv.DictReader(open(sys.argv[1]))); sys.exit(not all(1e-4 <= float(x[\"optimizer.lr\"]) <= 1e-2 and x[\"training.batch_size\"].isdigit() and 2 <= int(x[\"training.batch_size\"]) <= 8 and x[\"network.activation\"] in (\"relu\", \"silu\") for x in r))' '$work/r1/manifest.csv'"

# A point pdegen rejects stops `make`, naming the deck and pdegen's message.
cat >"$work/bad.yaml" <<EOF
base: $repo/tests/decks/tiny.yaml
grid:
  network.depth: [2, 6]
EOF
(cd "$work" && "$PYTHON" "$repo/tools/sweep" make bad.yaml -o bad >"$work/bad.log" 2>&1)
check "an invalid point: make exits 2 naming the deck and pdegen's error" \
  "[ $? -eq 2 ] && grep -q 'decks/p002.yaml' '$work/bad.log' && grep -q 'not divisible' '$work/bad.log'"

finish

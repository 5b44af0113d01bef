#!/usr/bin/env bash
# fields.h5 + fields.xdmf as ParaView opens them: the 2D and 3D examples of
# tests/unit/test_fields_file.cpp are written by pdegen's FieldsWriter, parsed as XML, and opened by
# tools/paraview_check.py with the reader ParaView picks by itself (File > Open) and with the legacy
# XDMF reader; every field must show, with x to the right, y up and one time step per sample.
# Deliberately broken copies must make the checker fail, so a silent checker cannot pass.
# Skipped (exit 0, a "skipped:" line) where pvpython is missing: tools/install_deps.sh --paraview.
#   FIELDS_TEST=/path/to/test_fields_file bash tests/io/test_paraview.sh   (from the repository root)
set -u

FIELDS_TEST=${FIELDS_TEST:-${1:-}}
if [ -z "$FIELDS_TEST" ] || [ ! -x "$FIELDS_TEST" ]; then
  echo "test_paraview.sh: set FIELDS_TEST to the test_fields_file executable" >&2
  exit 2
fi
if ! command -v pvpython >/dev/null; then
  echo "skipped: pvpython not found (tools/install_deps.sh --paraview installs ParaView's python)"
  exit 0
fi
# Nothing is rendered, but some pvpython builds want a display to start: give them a virtual one.
PV=(pvpython)
command -v xvfb-run >/dev/null && PV=(xvfb-run -a pvpython)
check=tools/paraview_check.py

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
pass() { echo "PASS  $1"; passed=$((passed + 1)); }
fail() {
  echo "FAIL  $1"
  sed 's/^/      | /' "$work/out" | tail -20
  failed=$((failed + 1))
}

if PDEGEN_TEST_KEEP_DIR="$work" "$FIELDS_TEST" -tc="2D fields round trip*,3D fields round trip*" \
  >"$work/out" 2>&1; then
  pass "FieldsWriter writes the 2D and 3D examples"
else
  fail "FieldsWriter writes the 2D and 3D examples"
fi

for dim in 2d 3d; do
  xdmf="$work/$dim/fields.xdmf"
  if python3 -c 'import sys, xml.etree.ElementTree as ET; ET.parse(sys.argv[1])' "$xdmf" >"$work/out" 2>&1; then
    pass "$dim fields.xdmf is well-formed XML"
  else
    fail "$dim fields.xdmf is well-formed XML"
  fi
  for reader in "" XDMFReader; do
    name="ParaView's own choice of reader"
    args=()
    if [ -n "$reader" ]; then
      name="reader $reader"
      args=(--reader "$reader")
    fi
    if "${PV[@]}" "$check" "$xdmf" --check-coordinates u_ref "${args[@]}" >"$work/out" 2>&1 &&
      grep -q "^OK:" "$work/out"; then
      pass "$dim: $name shows every field, oriented, one time step per sample"
      sed 's/^/      | /' "$work/out"
    else
      fail "$dim: $name shows every field, oriented, one time step per sample"
    fi
  done
done

# The checker must be able to fail, with its own FAIL line rather than a crash: (1) the same data
# addressed through HyperSlab data items, which ParaView's default (Xdmf3) reader shows no arrays
# for -- the reason fields.h5 carries virtual per-sample datasets; (2) u_ref read from log_nu's data.
python3 - "$work/2d/fields.xdmf" "$work/2d/hyperslab.xdmf" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def slab(m):
    dims, name, e = m.group(1), m.group(2), int(m.group(3))
    n = len(dims.split())
    start = " ".join([str(e)] + ["0"] * (n - 1))
    return (f'<DataItem ItemType="HyperSlab" Dimensions="{dims}" Type="HyperSlab">'
            f'<DataItem Dimensions="3 {n}" Format="XML">{start} {" ".join(["1"] * n)} 1 {" ".join(dims.split()[1:])}</DataItem>'
            f'<DataItem Dimensions="SAMPLES {" ".join(dims.split()[1:])}" NumberType="Float" Precision="4" '
            f'Format="HDF">fields.h5:/fields/{name}</DataItem></DataItem>')
text = re.sub(r'<DataItem Dimensions="([0-9 ]+)" NumberType="Float" Precision="4" Format="HDF">'
              r'fields.h5:/xdmf/(\w+)/(\d+)</DataItem>', slab, text)
samples = text.count('GridType="Uniform"')
open(sys.argv[2], "w").write(text.replace("SAMPLES", str(samples)))
PY
sed 's|fields.h5:/xdmf/u_ref/|fields.h5:/xdmf/log_nu/|' "$work/2d/fields.xdmf" >"$work/2d/swapped.xdmf"
for broken in hyperslab swapped; do
  "${PV[@]}" "$check" "$work/2d/$broken.xdmf" --check-coordinates u_ref >"$work/out" 2>&1
  rc=$?
  if [ "$rc" -eq 1 ] && grep -q "^FAIL:" "$work/out"; then
    pass "paraview_check.py rejects the $broken XDMF"
    grep "^FAIL:" "$work/out" | head -2 | sed 's/^/      | /'
  else
    fail "paraview_check.py rejects the $broken XDMF (exit code $rc)"
  fi
done

# A real training run's fields.xdmf (tiny deck), with ParaView's own choice of reader.
if [ -n "${PDEGEN:-}" ] && [ -x "$PDEGEN" ]; then
  if "$PDEGEN" train tests/decks/tiny.yaml output.dir="$work/run" >"$work/out" 2>&1 &&
    "${PV[@]}" "$check" "$work/run/fields.xdmf" >"$work/out" 2>&1 && grep -q "^OK:" "$work/out" &&
    for f in log_nu u_pred u_ref error; do grep -q "$f" "$work/out" || exit 1; done; then
    pass "a training run's fields.xdmf opens with every field in ParaView's default reader"
    sed 's/^/      | /' "$work/out"
  else
    fail "a training run's fields.xdmf opens with every field in ParaView's default reader"
  fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

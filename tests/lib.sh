# Shared by the script tests (tests/*/test_*.sh): PASS/FAIL bookkeeping and the closing line, skips,
# and one MPI run of pdegen with its log kept for the failure message. Source it after setting
# PDEGEN, MPIEXEC and `work` (a scratch directory).
passed=0 failed=0
pass() { echo "PASS: $1"; passed=$((passed + 1)); }
fail() { echo "FAIL: $1${2:+ ($2)}"; failed=$((failed + 1)); }
# The summary line; use as the script's last command so its status is the script's.
finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}
skip() {
  echo "skipped: $1"
  exit 0
}
require_mpi() { command -v "$MPIEXEC" >/dev/null 2>&1 || skip "no MPI launcher '$MPIEXEC'"; }
require_pdegen() { [ -x "$PDEGEN" ] || skip "no pdegen binary at $PDEGEN (build it, or set PDEGEN)"; }
# check DESCRIPTION SHELL-CONDITION: pass when the condition holds, else fail showing it.
check() { if eval "$2"; then pass "$1"; else fail "$1" "$2"; fi; }

# mpi_run NAME P VERB DECK [args...]: `pdegen VERB DECK args` on P ranks, output in $work/NAME.log;
# a non-zero exit fails the check with the log's last lines and returns 1.
mpi_run() {
  local name=$1 np=$2 verb=$3 deck=$4
  shift 4
  timeout 300 "$MPIEXEC" -n "$np" "$PDEGEN" "$verb" "$deck" "$@" >"$work/$name.log" 2>&1
  local rc=$?
  if [ $rc -ne 0 ]; then
    fail "$name: $verb on $np rank(s) exits 0" "exit $rc; last lines: $(tail -n 3 "$work/$name.log" | tr '\n' ' ')"
    return 1
  fi
}

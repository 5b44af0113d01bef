#!/usr/bin/env bash
# The unit-test listener (tests/unit/test_main.cpp) on the cases of test_skip_listener.cpp: a silent
# case fails its binary, a case with a reason prints "case skipped: <reason>" and exits 0, a case
# that checked something passes without the skip line; a filter that matches no case fails.
#   bash tests/unit/test_skip_listener.sh build/cpu/test_skip_listener
set -u
bin="$1"
source "$(dirname "$0")/../lib.sh"
run() { "$bin" --no-skip --test-case="$1" 2>&1; }
out=$(run "*gives no reason")
rc=$?
check "a case that checks nothing and gives no reason fails the binary, naming the case" \
  "[ $rc -ne 0 ] && echo \"\$out\" | grep -q 'test case \"listener: a case that checks nothing and gives no reason\" checked nothing and gave no reason'"
out=$(run "*says why")
rc=$?
check "a case that checks nothing and says why exits 0 and prints 'case skipped: <reason>'" \
  "[ $rc -eq 0 ] && echo \"\$out\" | grep -qx 'case skipped: no such device here'"
out=$(run "*skips a part")
rc=$?
check "a case that checks something passes and is not reported skipped" \
  "[ $rc -eq 0 ] && ! echo \"\$out\" | grep -q 'case skipped'"
out=$("$bin" 2>&1)
rc=$?
check "a plain run of the binary runs none of them and passes" "[ $rc -eq 0 ]"
out=$("$bin" --no-skip "--test-case=listener: a case that checks nothing" 2>&1)
rc=$?
check "a --test-case filter that matches no case (half a name) fails, naming it" \
  "[ $rc -ne 0 ] && echo \"\$out\" | grep -q 'error: no test case matches --test-case=listener: a case that checks nothing'"
finish

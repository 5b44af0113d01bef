// Cases for the listener of test_main.cpp, run only by tests/unit/test_skip_listener.sh (they carry
// doctest's skip decorator, so a plain run of this binary runs none of them): a case that checks
// nothing without a reason must fail its binary, one that gives a reason must be reported skipped,
// one that checks something must pass whatever reasons it gave.
#include <doctest/doctest.h>

#include "testing.hpp"

TEST_CASE("listener: a case that checks nothing and gives no reason" * doctest::skip()) {}

TEST_CASE("listener: a case that checks nothing and says why" * doctest::skip()) {
  pdegen::testing::skip_reason("no such device here");
}

TEST_CASE("listener: a case that checks something and skips a part" * doctest::skip()) {
  pdegen::testing::skip_reason("the GPU half");
  CHECK(1 + 1 == 2);
}

// doctest's main for every unit-test binary, with a listener that keeps the pass count honest: a
// test case that checked nothing is reported as skipped with the reasons it gave (skip_reason), in
// a line ctest's SKIP_REGULAR_EXPRESSION matches ("case skipped:"); one that checked nothing and gave
// no reason fails the binary, since a case that asserts nothing proves nothing. And a --test-case
// filter that matches no case fails too: ctest runs each case by name, and a name the filter cannot
// match (a ';' splits it into two ctest entries) would otherwise pass having run nothing.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <set>
#include <string>

namespace {

std::set<std::string>& case_skip_reasons() {
  static std::set<std::string> reasons;
  return reasons;
}

bool silent_case_seen = false;
int cases_run = 0;

struct SkipListener final : doctest::IReporter {
  explicit SkipListener(const doctest::ContextOptions&) {}
  void test_case_start(const doctest::TestCaseData& tc) override {
    name_ = tc.m_name;
    case_skip_reasons().clear();
    ++cases_run;
  }
  void test_case_end(const doctest::CurrentTestCaseStats& st) override {
    if (st.numAssertsCurrentTest > 0 || st.failure_flags != 0) return;
    if (case_skip_reasons().empty()) {
      std::printf("error: test case \"%s\" checked nothing and gave no reason (testing::skip_reason)\n",
                  name_.c_str());
      silent_case_seen = true;
    }
    for (const std::string& r : case_skip_reasons()) std::printf("case skipped: %s\n", r.c_str());
    std::fflush(stdout);
  }
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats&) override {}
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}

 private:
  std::string name_;
};

}  // namespace

REGISTER_LISTENER("skips", 1, SkipListener);

namespace pdegen::testing {
void skip_reason(const std::string& reason) { case_skip_reasons().insert(reason); }
}  // namespace pdegen::testing

int main(int argc, char** argv) {
  doctest::Context context(argc, argv);
  const int failed = context.run();
  if (context.shouldExit() || failed != 0) return failed;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (cases_run == 0 && (arg.rfind("--test-case=", 0) == 0 || arg.rfind("-tc=", 0) == 0)) {
      std::printf("error: no test case matches %s\n", arg.c_str());
      return 1;
    }
  }
  return silent_case_seen ? 1 : 0;
}

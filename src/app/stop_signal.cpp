// SIGINT/SIGTERM -> a flag the step loop polls (see stop_signal.hpp).
#include "app/stop_signal.hpp"

#include <csignal>
#include <cstdlib>

namespace pdegen::app {

namespace {
volatile std::sig_atomic_t g_signal = 0;

extern "C" void on_signal(int sig) {
  if (g_signal != 0) std::_Exit(128 + sig);  // second signal: stop now
  g_signal = sig;
}
}  // namespace

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

int stop_requested() { return g_signal; }

}  // namespace pdegen::app

// The collective watchdog (see watchdog.hpp).
#include "core/watchdog.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <array>
#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include "core/error.hpp"

namespace pdegen::watchdog {

namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// One slot per thread that can wait at once (compute thread, reducer thread, a few spare).
// `since` is stored before `what` is published, so a watcher that sees `what` sees its time.
struct Slot {
  std::atomic<bool> taken{false};
  std::atomic<const char*> what{nullptr};
  std::atomic<double> since{0};
};
std::array<Slot, 8> slots;

std::mutex phase_mutex;
std::string phase = "start-up";

std::string current_phase() {
  std::lock_guard lock(phase_mutex);
  return phase;
}

// The longest-waiting active slot: (seconds waited, operation); (0, nullptr) when none waits.
std::pair<double, const char*> longest_wait(double now) {
  std::pair<double, const char*> out{0, nullptr};
  for (Slot& s : slots) {
    const char* what = s.what.load();
    const double waited = now - s.since.load();
    if (what && waited > out.first) out = {waited, what};
  }
  return out;
}

[[noreturn]] void end_job(int code, const std::string& message) {
  spdlog::error("{}", message);
  abort_all(code);
}

void watch(double timeout, int rank, int (*stop_requested)()) {
  double signal_seen = 0;
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    const double now = now_seconds();
    const auto [waited, what] = longest_wait(now);
    if (timeout > 0 && what && waited > timeout)
      end_job(1, fmt::format("rank {} waited {:.0f} s in {} during {}: another rank has stalled, died or is "
                             "doing something else; stopping the job (parallel.collective_timeout = {:g} s)",
                             rank, waited, what, current_phase(), timeout));
    const int sig = stop_requested ? stop_requested() : 0;
    if (sig == 0) continue;
    if (signal_seen == 0) signal_seen = now;
    if (what && now - signal_seen > stop_grace_seconds && waited > stop_grace_seconds)
      end_job(128 + sig, fmt::format("rank {} received signal {} while blocked for {:.0f} s in {} during {}: "
                                     "stopping the job now; the last checkpoint is kept",
                                     rank, sig, waited, what, current_phase()));
  }
}

}  // namespace

void start(double timeout_seconds, int rank, int ranks, int (*stop_requested)()) {
  static std::once_flag once;
  if (ranks <= 1) return;
  std::call_once(once, [&] { std::thread(watch, timeout_seconds, rank, stop_requested).detach(); });
}

void set_phase(const std::string& p) {
  std::lock_guard lock(phase_mutex);
  phase = p;
}

Wait::Wait(const char* what) {
  for (int i = 0; i < static_cast<int>(slots.size()); ++i) {
    Slot& s = slots[static_cast<size_t>(i)];
    bool expected = false;
    if (s.taken.compare_exchange_strong(expected, true)) {
      s.since.store(now_seconds());
      s.what.store(what);
      slot_ = i;
      return;
    }
  }
  // More waiting threads than slots: this wait goes unwatched, the others still are.
}

Wait::~Wait() {
  if (slot_ < 0) return;
  Slot& s = slots[static_cast<size_t>(slot_)];
  s.what.store(nullptr);
  s.taken.store(false);
}

}  // namespace pdegen::watchdog

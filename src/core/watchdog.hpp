// No rank waits forever. Every blocking collective (sums over ranks, broadcasts, the gradient
// reduction, parallel writes) marks the calling thread with a Wait; a watchdog thread ends the job
// when one lasts longer than parallel.collective_timeout, naming this rank, the operation and what
// the run was doing. It also ends a rank that a stop signal (SIGTERM, SIGINT) finds blocked: the
// step loop polls the signal between steps, which a rank stuck in a collective never reaches.
#pragma once

#include <string>

namespace pdegen::watchdog {

// How long a rank blocked in a collective may wait after a stop signal before it ends the job.
inline constexpr double stop_grace_seconds = 20;

// Starts the watchdog thread (once per process; only with several ranks). `timeout_seconds` 0 =
// no limit; `stop_requested` returns the pending stop signal or 0.
void start(double timeout_seconds, int rank, int ranks, int (*stop_requested)());
// What the run is doing ("step 12", "evaluation after step 500"), for the messages.
void set_phase(const std::string& phase);

// While alive, the calling thread counts as waiting in collective `what` (a string literal).
class Wait {
 public:
  explicit Wait(const char* what);
  ~Wait();
  Wait(const Wait&) = delete;
  Wait& operator=(const Wait&) = delete;

 private:
  int slot_ = -1;
};

}  // namespace pdegen::watchdog

// Per-rank event recorder behind timeline.json (Chrome trace format; Perfetto and chrome://tracing
// open it). The compute thread records layer phases, the reducer's communication thread records
// bucket reductions; both on one clock whose origin every rank sets at the same barrier, so the
// ranks' tracks line up. A disabled or inactive timeline costs one branch per event.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace pdegen {

class Timeline {
 public:
  enum class Track : int { compute = 0, communication = 1 };

  // Sets the clock origin; call on every rank right after a barrier.
  void start_clock() { origin_ = clock::now(); }
  // Recording on/off (the trainer switches it on for the deck's window of steps).
  void set_active(bool active) { active_ = active; }
  bool active() const { return active_; }
  // Microseconds since start_clock().
  double now_us() const { return std::chrono::duration<double, std::micro>(clock::now() - origin_).count(); }

  // A complete event [t0, t1] (µs). `args` is a JSON object body ("\"bytes\": 4096") or empty.
  void add(Track track, std::string name, double t0_us, double t1_us, std::string args = {});

  // This rank's events as a comma-separated list of trace-event objects with pid = rank, plus the
  // metadata naming the process "rank N" and its two threads.
  std::string events_json(int rank) const;
  size_t size() const;

 private:
  struct Event {
    Track track;
    std::string name, args;
    double t0, t1;
  };
  using clock = std::chrono::steady_clock;
  clock::time_point origin_ = clock::now();
  bool active_ = false;
  mutable std::mutex mutex_;
  std::vector<Event> events_;
};

// RAII: one compute-track event for the lifetime of the scope, when the timeline is active.
class TimelineScope {
 public:
  TimelineScope(Timeline* timeline, const char* name)
      : timeline_(timeline && timeline->active() ? timeline : nullptr), name_(name) {
    if (timeline_) t0_ = timeline_->now_us();
  }
  ~TimelineScope() {
    if (timeline_) timeline_->add(Timeline::Track::compute, name_, t0_, timeline_->now_us());
  }
  TimelineScope(const TimelineScope&) = delete;
  TimelineScope& operator=(const TimelineScope&) = delete;

 private:
  Timeline* timeline_;
  const char* name_;
  double t0_ = 0;
};

}  // namespace pdegen

// Timeline events and their Chrome trace JSON (see timeline.hpp).
#include "core/timeline.hpp"

#include <fmt/format.h>

namespace pdegen {

void Timeline::add(Track track, std::string name, double t0_us, double t1_us, std::string args) {
  if (!active_) return;
  std::lock_guard lock(mutex_);
  events_.push_back(Event{track, std::move(name), std::move(args), t0_us, t1_us});
}

size_t Timeline::size() const {
  std::lock_guard lock(mutex_);
  return events_.size();
}

std::string Timeline::events_json(int rank) const {
  std::lock_guard lock(mutex_);
  std::string out = fmt::format(
      R"({{"name": "process_name", "ph": "M", "pid": {0}, "args": {{"name": "rank {0}"}}}},)"
      R"({{"name": "thread_name", "ph": "M", "pid": {0}, "tid": 0, "args": {{"name": "compute"}}}},)"
      R"({{"name": "thread_name", "ph": "M", "pid": {0}, "tid": 1, "args": {{"name": "gradient reduction"}}}})",
      rank);
  for (const Event& e : events_) {
    // Names are pdegen's own layer and bucket names: no characters that need JSON escaping.
    out += fmt::format(R"(,{{"name": "{}", "ph": "X", "pid": {}, "tid": {}, "ts": {:.3f}, "dur": {:.3f})",
                       e.name, rank, static_cast<int>(e.track), e.t0, e.t1 - e.t0);
    out += e.args.empty() ? "}" : fmt::format(R"(, "args": {{{}}}}})", e.args);
  }
  return out;
}

}  // namespace pdegen

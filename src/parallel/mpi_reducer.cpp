// The MPI gradient reducer (see mpi_reducer.hpp): per-bucket phase lists of non-blocking MPI collectives,
// driven either by the communication thread (overlap) or by finish() (blocking baseline).
#include "parallel/mpi_reducer.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <limits>
#include <utility>

#include "core/denormals.hpp"
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/timer.hpp"
#include "core/watchdog.hpp"

namespace pdegen {

namespace {

uint16_t encode(float v, Compression c) { return c == Compression::fp16 ? to_f16(v).bits : to_bf16(v).bits; }
float decode(uint16_t v, Compression c) { return c == Compression::fp16 ? from_f16({v}) : from_bf16({v}); }

int as_int(int64_t n) {
  PDEGEN_CHECK(n <= std::numeric_limits<int>::max(),
               "a bucket of {} elements exceeds MPI's int count: lower parallel.bucket_mb", n);
  return static_cast<int>(n);
}

}  // namespace

// One bucket's reduction: phases run in order, each a non-blocking collective started by `start`
// and followed, once complete, by `finish` (unpacking, summing). Buffers are sized once at setup.
struct MpiReducer::Work {
  struct Phase {
    std::function<MPI_Request()> start;
    std::function<void()> finish;
  };
  std::vector<Phase> phases;
  size_t phase = 0;
  MPI_Request request = MPI_REQUEST_NULL;
  std::vector<float> stage;              // hierarchical: this rank's node shard
  std::vector<uint16_t> wire, received;  // compressed: 16-bit shards
  std::vector<int> counts, displs;       // share_of counts over the phase's communicator
  std::vector<int> node_counts, node_displs;
  std::vector<int> recv_counts, recv_displs;

  // Starts phase `phase`; returns false when every phase is done.
  bool launch() {
    if (phase == phases.size()) return false;
    request = phases[phase].start();
    return true;
  }
  // Completes the current phase's bookkeeping after its request finished, and starts the next one.
  // Returns true when the whole reduction is done.
  bool advance() {
    if (phases[phase].finish) phases[phase].finish();
    ++phase;
    return !launch();
  }
  void reset() { phase = 0; }
};

namespace {

// Appends the phases of a SUM-allreduce of `data[0..n)` over `comm` to `work`.
void add_allreduce(float* data, int64_t n, const Communicator& comm, Compression compression, auto& work) {
  const MPI_Comm c = comm.comm();
  const int count = as_int(n);
  if (compression == Compression::none) {
    work.phases.push_back({[=] {
                             MPI_Request r;
                             MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, data, count, MPI_FLOAT, MPI_SUM, c, &r));
                             return r;
                           },
                           nullptr});
    return;
  }
  // 16-bit all-to-all of shards, fp32 sum of this rank's shard in rank order, 16-bit allgather.
  const int P = comm.size(), me = comm.rank();
  comm.share_counts(n, work.counts, work.displs);
  const int mine = work.counts[static_cast<size_t>(me)], mine_at = work.displs[static_cast<size_t>(me)];
  work.wire.resize(static_cast<size_t>(n));
  work.received.resize(static_cast<size_t>(mine) * static_cast<size_t>(P));
  work.recv_counts.assign(static_cast<size_t>(P), mine);
  work.recv_displs.resize(static_cast<size_t>(P));
  for (int r = 0; r < P; ++r) work.recv_displs[static_cast<size_t>(r)] = r * mine;
  auto* w = &work;
  work.phases.push_back({[=] {
                           for (int64_t i = 0; i < n; ++i)
                             w->wire[static_cast<size_t>(i)] = encode(data[i], compression);
                           MPI_Request r;
                           MPI_CHECK(MPI_Ialltoallv(w->wire.data(), w->counts.data(), w->displs.data(),
                                                    MPI_UINT16_T, w->received.data(), w->recv_counts.data(),
                                                    w->recv_displs.data(), MPI_UINT16_T, c, &r));
                           return r;
                         },
                         [=] {
                           for (int i = 0; i < mine; ++i) {
                             float s = 0;
                             for (int r = 0; r < P; ++r)
                               s += decode(w->received[static_cast<size_t>(r * mine + i)], compression);
                             w->wire[static_cast<size_t>(mine_at + i)] = encode(s, compression);
                           }
                         }});
  work.phases.push_back({[=] {
                           MPI_Request r;
                           MPI_CHECK(MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, w->wire.data(),
                                                     w->counts.data(), w->displs.data(), MPI_UINT16_T, c,
                                                     &r));
                           return r;
                         },
                         [=] {
                           for (int64_t i = 0; i < n; ++i)
                             data[i] = decode(w->wire[static_cast<size_t>(i)], compression);
                         }});
}

}  // namespace

MpiReducer::MpiReducer(ParameterRegistry& params, const Communicator& comm, const ParallelConfig& options,
                       Timeline* timeline)
    : params_(params),
      comm_(comm.duplicate()),
      statistics_(comm.duplicate()),
      options_(options),
      timeline_(timeline) {
  schedule_ = make_bucket_schedule(params, options.bucket_mb, options.first_bucket_mb);
  verify_schedule(schedule_, params, comm_);
  const int P = comm_.size();
  if (P > 1 && options.overlap) {
    int level = 0;
    MPI_CHECK(MPI_Query_thread(&level));
    if (level < MPI_THREAD_MULTIPLE)
      throw UserError(
          "parallel.overlap needs MPI initialised with MPI_THREAD_MULTIPLE, which this MPI did not grant; "
          "set parallel.overlap: false");
  }

  // Hierarchical: decided from the node layout, identically on every rank.
  ReductionGroups groups = reduction_groups(comm_, options);
  hierarchical_ = groups.hierarchical;
  node_ = std::move(groups.node);
  cross_ = std::move(groups.cross);

  float* grads = params.flat_grads().data<float>();
  for (const Bucket& b : schedule_.buckets) {
    auto w = std::make_unique<Work>();
    float* data = grads + b.begin;
    const int64_t n = b.count();
    if (P > 1 && hierarchical_) {
      node_.share_counts(n, w->node_counts, w->node_displs);
      const int mine = w->node_counts[static_cast<size_t>(node_.rank())];
      w->stage.resize(static_cast<size_t>(mine));
      Work* wp = w.get();
      const MPI_Comm nc = node_.comm();
      w->phases.push_back({[=] {
                             MPI_Request r;
                             MPI_CHECK(MPI_Ireduce_scatter(data, wp->stage.data(), wp->node_counts.data(),
                                                           MPI_FLOAT, MPI_SUM, nc, &r));
                             return r;
                           },
                           nullptr});
      if (cross_.size() > 1) add_allreduce(w->stage.data(), mine, cross_, options.compression, *w);
      w->phases.push_back({[=] {
                             MPI_Request r;
                             MPI_CHECK(MPI_Iallgatherv(wp->stage.data(), mine, MPI_FLOAT, data,
                                                       wp->node_counts.data(), wp->node_displs.data(),
                                                       MPI_FLOAT, nc, &r));
                             return r;
                           },
                           nullptr});
    } else if (P > 1) {
      add_allreduce(data, n, comm_, options.compression, *w);
    }
    work_.push_back(std::move(w));
  }
  const size_t nb = schedule_.buckets.size();
  pending_.assign(nb, 0);
  ready_.assign(nb, 0);
  params.set_grad_ready_hook([this](ParameterRegistry::Id id) { on_grad_ready(id); });
  if (P > 1 && options.overlap)
    thread_ = std::thread([this] {
      flush_denormals_in_this_thread();  // its sums run on the same floats as the compute threads
      communication_loop();
    });
}

MpiReducer::~MpiReducer() {
  params_.set_grad_ready_hook(nullptr);
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::string MpiReducer::describe() const {
  std::string mode = comm_.size() == 1 ? "1 rank, nothing to reduce"
                     : hierarchical_
                         ? fmt::format("hierarchical: {} nodes of {} ranks", cross_.size(), node_.size())
                         : "flat allreduce";
  return fmt::format("gradient reducer: {}; {}; overlap {}; wire {}", schedule_.describe(), mode,
                     options_.overlap ? "on" : "off",
                     options_.compression == Compression::none   ? "fp32"
                     : options_.compression == Compression::fp16 ? "fp16 (fp32 sums)"
                                                                 : "bf16 (fp32 sums)");
}

void MpiReducer::begin_backward(bool communicate) {
  std::lock_guard lock(mutex_);
  PDEGEN_CHECK(!step_open_ || !communicate_, "MpiReducer::begin_backward during a step's reduction");
  communicate_ = communicate && comm_.size() > 1;
  if (!communicate_) return;
  step_open_ = true;
  launched_ = completed_ = 0;
  step_comm_seconds_ = 0;
  for (size_t b = 0; b < schedule_.buckets.size(); ++b) {
    pending_[b] = static_cast<int>(schedule_.buckets[b].params.size());
    ready_[b] = 0;
    work_[b]->reset();
  }
}

void MpiReducer::on_grad_ready(ParameterRegistry::Id id) {
  if (!communicate_) return;
  const int b = schedule_.bucket_of[static_cast<size_t>(id)];
  if (--pending_[static_cast<size_t>(b)] == 0) mark_ready(b);
}

void MpiReducer::mark_ready(int bucket) {
  {
    std::lock_guard lock(mutex_);
    ready_[static_cast<size_t>(bucket)] = 1;
  }
  cv_.notify_all();
}

void MpiReducer::complete(int bucket, double t0) {
  if (timeline_ && timeline_->active()) {
    const double t1 = timeline_->now_us();
    const Bucket& b = schedule_.buckets[static_cast<size_t>(bucket)];
    timeline_->add(Timeline::Track::communication, fmt::format("bucket {}", bucket), t0, t1,
                   fmt::format(R"("parameters": {}, "bytes": {})", b.params.size(), b.count() * 4));
  }
}

// The communication thread: launches ready buckets in schedule order and drives the in-flight
// ones with MPI_Test. While backward runs, polls back off from 20 µs to 1 ms as long as nothing
// progresses, so the thread does not take a core from backward (MPICH progresses only inside MPI
// calls, so someone must poll); once finish() waits, the compute thread is idle and polling is tight.
void MpiReducer::communication_loop() {
  const int nb = static_cast<int>(schedule_.buckets.size());
  // MPI wants the collectives of a communicator started in the same order on every rank. One
  // collective per bucket, launched in schedule order, guarantees that with any number in flight;
  // multi-phase reductions (hierarchical, compressed) finish one bucket before the next starts, or
  // a fast rank could start bucket b+1's first phase before bucket b's second.
  const bool one_at_a_time = !work_.empty() && work_[0]->phases.size() > 1;
  std::vector<int> in_flight;
  std::vector<Timer> started(static_cast<size_t>(nb));
  std::vector<double> t0(static_cast<size_t>(nb));
  constexpr auto fastest = std::chrono::microseconds(20), slowest = std::chrono::microseconds(1000);
  auto poll = fastest;
  try {
    for (;;) {
      {
        std::unique_lock lock(mutex_);
        auto launchable = [&] {
          return step_open_ && launched_ < nb && ready_[static_cast<size_t>(launched_)] &&
                 !(one_at_a_time && !in_flight.empty());
        };
        if (in_flight.empty())
          cv_.wait(lock, [&] { return stop_ || launchable(); });
        else
          cv_.wait_for(lock, draining_ ? std::chrono::microseconds(0) : poll,
                       [&] { return stop_ || launchable(); });
        if (stop_) return;
        poll = std::min(poll * 2, slowest);
        while (launchable()) {
          poll = fastest;
          const int b = launched_++;
          started[static_cast<size_t>(b)].reset();
          t0[static_cast<size_t>(b)] = timeline_ ? timeline_->now_us() : 0;
          if (work_[static_cast<size_t>(b)]->launch())
            in_flight.push_back(b);
          else
            ++completed_;  // nothing to do (cannot happen with P > 1, kept for safety)
        }
      }
      for (size_t k = 0; k < in_flight.size();) {
        Work& w = *work_[static_cast<size_t>(in_flight[k])];
        int done = 0;
        MPI_CHECK(MPI_Test(&w.request, &done, MPI_STATUS_IGNORE));
        if (done) poll = fastest;
        if (done && w.advance()) {
          const int b = in_flight[k];
          complete(b, t0[static_cast<size_t>(b)]);
          in_flight.erase(in_flight.begin() + static_cast<std::ptrdiff_t>(k));
          std::lock_guard lock(mutex_);
          step_comm_seconds_ += started[static_cast<size_t>(b)].seconds();
          ++completed_;
          if (completed_ == nb) cv_.notify_all();
        } else {
          ++k;
        }
      }
    }
  } catch (...) {
    std::lock_guard lock(mutex_);
    error_ = std::current_exception();
    completed_ = nb;  // release finish(), which rethrows
    cv_.notify_all();
  }
}

void MpiReducer::finish() {
  if (!communicate_) return;
  const int nb = static_cast<int>(schedule_.buckets.size());
  Timer waited;
  const watchdog::Wait wait("the gradient reduction");
  if (!options_.overlap) {
    // Blocking baseline: every bucket in schedule order, here.
    for (int b = 0; b < nb; ++b) {
      Work& w = *work_[static_cast<size_t>(b)];
      Timer t;
      const double t0 = timeline_ ? timeline_->now_us() : 0;
      for (bool more = w.launch(); more;) {
        MPI_CHECK(MPI_Wait(&w.request, MPI_STATUS_IGNORE));
        more = !w.advance();
      }
      complete(b, t0);
      step_comm_seconds_ += t.seconds();
    }
  } else {
    {
      std::lock_guard lock(mutex_);
      for (int b = 0; b < nb; ++b) ready_[static_cast<size_t>(b)] = 1;  // unreported buckets too
      draining_ = true;
    }
    cv_.notify_all();
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return completed_ == nb; });
    if (error_) std::rethrow_exception(error_);
  }
  std::lock_guard lock(mutex_);
  stats_.exposed_seconds += waited.seconds();
  stats_.comm_seconds += step_comm_seconds_;
  ++stats_.steps;
  step_open_ = false;
  communicate_ = false;
  draining_ = false;
}

void MpiReducer::allreduce_statistics(double* data, int count) { statistics_.allreduce_sum(data, count); }

}  // namespace pdegen

// The NCCL gradient reducer (see nccl_reducer.hpp): launches on the host thread that runs backward,
// execution on a communication stream ordered by events. A CPU-only build keeps the entry points,
// and the constructor says that the CUDA backend is not built in.
#include "parallel/nccl_reducer.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <deque>
#include <exception>
#include <vector>

#include "core/error.hpp"
#include "core/watchdog.hpp"
#include "parallel/nccl_communicator.hpp"

#ifdef PDEGEN_HAVE_CUDA
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_context.hpp"
#include "parallel/nccl_wire.hpp"
#endif

namespace pdegen {

#ifdef PDEGEN_HAVE_CUDA

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// True once everything before `event` on its stream has run; never waits.
bool event_done(cudaEvent_t event) {
  const cudaError_t e = cudaEventQuery(event);
  if (e == cudaErrorNotReady) {
    (void)cudaGetLastError();  // "not ready" is an answer, not an error: keep it out of later checks
    return false;
  }
  CUDA_CHECK(e);
  return true;
}

double elapsed_seconds(cudaEvent_t from, cudaEvent_t to) {
  float ms = 0;
  CUDA_CHECK(cudaEventElapsedTime(&ms, from, to));
  return static_cast<double>(ms) * 1e-3;
}

// Ends an NCCL group on the way out, also when a call inside it throws (NCCL would otherwise stay
// inside the group for every later call of this thread).
class GroupGuard {
 public:
  GroupGuard() { NcclCommunicator::group_start(); }
  ~GroupGuard() noexcept(false) {
    if (std::uncaught_exceptions() > active_exceptions_)
      (void)ncclGroupEnd();
    else
      NcclCommunicator::group_end();
  }
  GroupGuard(const GroupGuard&) = delete;
  GroupGuard& operator=(const GroupGuard&) = delete;

 private:
  int active_exceptions_ = std::uncaught_exceptions();
};

}  // namespace

struct NcclReducer::State {
  State(ParameterRegistry& p, const Communicator& c, const ParallelConfig& o)
      : params(p), comm(c.duplicate()), options(o) {}
  ~State();

  // A step's timing: one (begin, end) pair per launch on the communication stream, the moment
  // backward's work was all queued (compute stream) and the moment the last bucket was reduced.
  struct Span {
    cudaEvent_t begin = nullptr, end = nullptr;
  };
  struct StepEvents {
    std::vector<Span> spans;
    cudaEvent_t backward_done = nullptr, reduced = nullptr;
  };

  ParameterRegistry& params;
  Communicator comm;  // private MPI duplicate: schedule check, node/cross splits, NCCL ids
  ParallelConfig options;
  BucketSchedule schedule;
  ReductionGroups groups;
  // flat: `world`; hierarchical: `node` (if more than one rank a node) and `cross` (if more than
  // one node). Destroyed in ~State once the stream is drained, before the stream itself.
  std::unique_ptr<NcclCommunicator> world, node, cross;
  // allreduce_statistics: its communicator (over all ranks, made at the first call) and a device
  // buffer of `statistics_capacity` doubles. Only ever used on `stream`, after the buckets queued
  // before it, so it never runs concurrently with the gradient collectives.
  std::unique_ptr<NcclCommunicator> statistics;
  double* statistics_buffer = nullptr;
  int statistics_capacity = 0;
  cudaStream_t stream = nullptr;   // communication stream
  cudaEvent_t produced = nullptr;  // recorded on cuda::stream() at each launch
  float* grads = nullptr;          // the device flat gradient buffer
  // Device staging, sized at setup for the largest bucket. One set serves every bucket because the
  // communication stream runs the buckets one after another.
  float* padded = nullptr;  // hierarchical: node_size * ceil(n / node_size) elements
  uint16_t* wire = nullptr;
  uint16_t* received = nullptr;  // compressed: P * ceil(n / P) 16-bit values each
  ReducerStats stats;

  // Per step (host thread only).
  std::vector<int> pending;  // parameters still to report, per bucket
  std::vector<char> ready;
  int launched = 0;
  bool communicate = false;
  StepEvents current;
  std::deque<StepEvents> unread;  // finished steps whose events may not have completed yet
  std::vector<cudaEvent_t> spare;

  cudaEvent_t take_event();
  void recycle(StepEvents& step);
  void on_grad_ready(ParameterRegistry::Id id);
  void launch_ready();
  void enqueue_bucket(int bucket);
  void enqueue_allreduce(float* data, int64_t n, const NcclCommunicator& over);
  void read_finished_steps();
};

NcclReducer::State::~State() {
  params.set_grad_ready_hook(nullptr);
  // Nothing may throw here: errors are ignored, the process is ending or the run has failed.
  if (stream != nullptr) (void)cudaStreamSynchronize(stream);
  // The communicators go while the stream they last ran on still exists (NCCL may keep events on
  // it), in the same order on every rank (ncclCommDestroy may synchronise the ranks of a node).
  statistics.reset();
  cross.reset();
  node.reset();
  world.reset();
  auto destroy = [](cudaEvent_t e) {
    if (e != nullptr) (void)cudaEventDestroy(e);
  };
  auto destroy_step = [&](StepEvents& step) {
    for (const Span& s : step.spans) destroy(s.begin), destroy(s.end);
    destroy(step.backward_done);
    destroy(step.reduced);
  };
  destroy_step(current);
  for (StepEvents& step : unread) destroy_step(step);
  for (cudaEvent_t e : spare) destroy(e);
  destroy(produced);
  for (void* p : {static_cast<void*>(padded), static_cast<void*>(wire), static_cast<void*>(received),
                  static_cast<void*>(statistics_buffer)})
    if (p != nullptr) (void)cudaFree(p);
  if (stream != nullptr) (void)cudaStreamDestroy(stream);
}

cudaEvent_t NcclReducer::State::take_event() {
  if (!spare.empty()) {
    cudaEvent_t e = spare.back();
    spare.pop_back();
    return e;
  }
  cudaEvent_t e = nullptr;
  CUDA_CHECK(cudaEventCreate(&e));  // with timing: stats come from these
  return e;
}

void NcclReducer::State::recycle(StepEvents& step) {
  for (const Span& s : step.spans) spare.push_back(s.begin), spare.push_back(s.end);
  if (step.backward_done != nullptr) spare.push_back(step.backward_done);
  if (step.reduced != nullptr) spare.push_back(step.reduced);
  step = StepEvents{};
}

void NcclReducer::State::on_grad_ready(ParameterRegistry::Id id) {
  if (!communicate) return;
  const int b = schedule.bucket_of[static_cast<size_t>(id)];
  if (--pending[static_cast<size_t>(b)] == 0) {
    ready[static_cast<size_t>(b)] = 1;
    if (options.overlap) launch_ready();
  }
}

// Launches, strictly in schedule order, every bucket from the first unlaunched one up to the first
// one not ready: after everything queued so far on cuda::stream(), on the communication stream.
void NcclReducer::State::launch_ready() {
  const int nb = static_cast<int>(schedule.buckets.size());
  int last = launched;
  while (last < nb && ready[static_cast<size_t>(last)]) ++last;
  if (last == launched) return;
  CUDA_CHECK(cudaEventRecord(produced, cuda::stream()));
  CUDA_CHECK(cudaStreamWaitEvent(stream, produced, 0));
  Span span{take_event(), take_event()};
  current.spans.push_back(span);
  CUDA_CHECK(cudaEventRecord(span.begin, stream));
  // One NCCL group per bucket, never one across buckets: which buckets are ready together differs
  // between ranks, and NCCL must see the same groups on every rank (nccl_reducer.hpp).
  for (; launched < last; ++launched) enqueue_bucket(launched);
  CUDA_CHECK(cudaEventRecord(span.end, stream));
}

void NcclReducer::State::enqueue_bucket(int bucket) {
  const Bucket& b = schedule.buckets[static_cast<size_t>(bucket)];
  float* data = grads + b.begin;
  const int64_t n = b.count();
  if (n == 0) return;
  if (!groups.hierarchical) {
    enqueue_allreduce(data, n, *world);
    return;
  }
  // Equal node shards of k elements: the bucket goes into a zero-padded copy, and comes back.
  const int L = groups.node.size(), me = groups.node.rank();
  const int64_t k = ceil_div(n, L);
  CUDA_CHECK(cudaMemcpyAsync(padded, data, static_cast<size_t>(n) * sizeof(float), cudaMemcpyDeviceToDevice,
                             stream));
  if (L * k > n)
    CUDA_CHECK(cudaMemsetAsync(padded + n, 0, static_cast<size_t>(L * k - n) * sizeof(float), stream));
  if (node) node->reduce_scatter_sum(padded, k, stream);
  if (cross) enqueue_allreduce(padded + me * k, k, *cross);
  if (node) node->allgather(padded, k, stream);
  CUDA_CHECK(cudaMemcpyAsync(data, padded, static_cast<size_t>(n) * sizeof(float), cudaMemcpyDeviceToDevice,
                             stream));
}

// SUM over `over` of data[0, n) in place, in the configured wire format.
void NcclReducer::State::enqueue_allreduce(float* data, int64_t n, const NcclCommunicator& over) {
  const int P = over.size(), me = over.rank();
  if (P == 1 || n == 0) return;
  if (options.compression == Compression::none) {
    over.allreduce_sum(data, n, stream);
    return;
  }
  // The MpiReducer's algorithm on equal shards of k: rank r owns [r k, (r + 1) k).
  const bool bf16 = options.compression == Compression::bf16;
  const int64_t k = ceil_div(n, P), shard_bytes = k * static_cast<int64_t>(sizeof(uint16_t));
  nccl_wire::encode(data, n, wire, P * k, bf16, stream);
  // received[r k ...] = rank r's 16-bit values of this rank's shard; our own by a local copy.
  CUDA_CHECK(cudaMemcpyAsync(received + me * k, wire + me * k, static_cast<size_t>(shard_bytes),
                             cudaMemcpyDeviceToDevice, stream));
  {
    const GroupGuard group;
    for (int r = 0; r < P; ++r) {
      if (r == me) continue;
      over.send(wire + r * k, shard_bytes, r, stream);
      over.recv(received + r * k, shard_bytes, r, stream);
    }
  }
  nccl_wire::sum_shards(received, P, k, wire + me * k, bf16, stream);
  over.allgather_bytes(wire, shard_bytes, stream);
  nccl_wire::decode(wire, n, data, bf16, stream);
}

void NcclReducer::State::read_finished_steps() {
  while (!unread.empty()) {
    StepEvents& step = unread.front();
    if (!event_done(step.reduced) || !event_done(step.backward_done)) return;
    double comm_seconds = 0;
    for (const Span& s : step.spans) comm_seconds += elapsed_seconds(s.begin, s.end);
    stats.comm_seconds += comm_seconds;
    // How long the compute stream waited for the reduction after backward's last kernel was queued
    // (negative when the reduction was done first).
    stats.exposed_seconds += std::max(0.0, elapsed_seconds(step.backward_done, step.reduced));
    recycle(step);
    unread.pop_front();
  }
}

NcclReducer::NcclReducer(ParameterRegistry& params, const Communicator& comm, const ParallelConfig& options,
                         Timeline* /*timeline: no GPU-timed events (see the header)*/)
    : state_(std::make_unique<State>(params, comm, options)) {
  State& s = *state_;
  PDEGEN_CHECK(params.finalized() && params.flat_grads().device() == Device::cuda,
               "the NCCL reducer needs a parameter registry finalized on the GPU (host gradients go to the "
               "MpiReducer: make_reducer picks it)");
  s.schedule = make_bucket_schedule(params, options.bucket_mb, options.first_bucket_mb);
  verify_schedule(s.schedule, params, s.comm);
  s.groups = reduction_groups(s.comm, options);
  const size_t nb = s.schedule.buckets.size();
  s.pending.assign(nb, 0);
  s.ready.assign(nb, 0);
  s.grads = params.flat_grads().data<float>();

  const int P = s.comm.size();
  if (P > 1) {
    (void)cuda::stream();  // binds the selected device: the communication stream goes on the same one
    CUDA_CHECK(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreateWithFlags(&s.produced, cudaEventDisableTiming));
    const bool compressed = options.compression != Compression::none;
    int64_t padded_count = 0, wire_count = 0;
    if (!s.groups.hierarchical) {
      s.world = std::make_unique<NcclCommunicator>(s.comm);
      for (const Bucket& b : s.schedule.buckets)
        if (compressed) wire_count = std::max(wire_count, P * ceil_div(b.count(), P));
    } else {
      const int L = s.groups.node.size(), C = s.groups.cross.size();
      if (L > 1) s.node = std::make_unique<NcclCommunicator>(s.groups.node);
      if (C > 1) s.cross = std::make_unique<NcclCommunicator>(s.groups.cross);
      for (const Bucket& b : s.schedule.buckets) {
        const int64_t k = ceil_div(b.count(), L);
        padded_count = std::max(padded_count, L * k);
        if (compressed && C > 1) wire_count = std::max(wire_count, C * ceil_div(k, C));
      }
    }
    if (padded_count > 0)
      CUDA_CHECK(
          cudaMalloc(reinterpret_cast<void**>(&s.padded), static_cast<size_t>(padded_count) * sizeof(float)));
    if (wire_count > 0) {
      const size_t bytes = static_cast<size_t>(wire_count) * sizeof(uint16_t);
      CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&s.wire), bytes));
      CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&s.received), bytes));
    }
  }
  params.set_grad_ready_hook([state = state_.get()](ParameterRegistry::Id id) { state->on_grad_ready(id); });
}

NcclReducer::~NcclReducer() = default;

void NcclReducer::begin_backward(bool communicate) {
  State& s = *state_;
  PDEGEN_CHECK(!s.communicate, "NcclReducer::begin_backward during a step's reduction");
  s.read_finished_steps();
  s.communicate = communicate && s.comm.size() > 1;
  if (!s.communicate) return;
  s.launched = 0;
  for (size_t b = 0; b < s.schedule.buckets.size(); ++b) {
    s.pending[b] = static_cast<int>(s.schedule.buckets[b].params.size());
    s.ready[b] = 0;
  }
}

void NcclReducer::finish() {
  State& s = *state_;
  if (!s.communicate) return;
  // Buckets whose parameters never reported (no samples on this rank) are reduced too, so every
  // rank issues the same collectives.
  std::fill(s.ready.begin(), s.ready.end(), char{1});
  s.current.backward_done = s.take_event();
  CUDA_CHECK(cudaEventRecord(s.current.backward_done, cuda::stream()));
  s.launch_ready();
  s.current.reduced = s.take_event();
  CUDA_CHECK(cudaEventRecord(s.current.reduced, s.stream));
  // The compute stream (the trainer's copy of the gradients, the next step's zeroing) goes on
  // after the reduction; the host does not wait.
  CUDA_CHECK(cudaStreamWaitEvent(cuda::stream(), s.current.reduced, 0));
  s.unread.push_back(std::move(s.current));
  s.current = State::StepEvents{};
  ++s.stats.steps;
  s.communicate = false;
}

const BucketSchedule& NcclReducer::schedule() const { return state_->schedule; }

const ReducerStats& NcclReducer::stats() const {
  state_->read_finished_steps();
  return state_->stats;
}

bool NcclReducer::hierarchical() const { return state_->groups.hierarchical; }

std::string NcclReducer::describe() const {
  const State& s = *state_;
  const std::string mode = s.comm.size() == 1      ? "1 rank, nothing to reduce"
                           : s.groups.hierarchical ? fmt::format("hierarchical: {} nodes of {} ranks",
                                                                 s.groups.cross.size(), s.groups.node.size())
                                                   : "flat allreduce";
  return fmt::format("gradient reducer (NCCL on a communication stream): {}; {}; overlap {}; wire {}",
                     s.schedule.describe(), mode, s.options.overlap ? "on" : "off",
                     s.options.compression == Compression::none   ? "fp32"
                     : s.options.compression == Compression::fp16 ? "fp16 (fp32 sums)"
                                                                  : "bf16 (fp32 sums)");
}

void NcclReducer::allreduce_statistics(double* data, int count) {
  State& s = *state_;
  if (s.comm.size() == 1 || count <= 0) return;
  if (!s.statistics) s.statistics = std::make_unique<NcclCommunicator>(s.comm);
  if (s.statistics_capacity < count) {
    if (s.statistics_buffer != nullptr) CUDA_CHECK(cudaFree(s.statistics_buffer));
    s.statistics_buffer = nullptr;
    s.statistics_capacity = 0;
    CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&s.statistics_buffer),
                          static_cast<size_t>(count) * sizeof(double)));
    s.statistics_capacity = count;
  }
  const size_t bytes = static_cast<size_t>(count) * sizeof(double);
  CUDA_CHECK(cudaMemcpyAsync(s.statistics_buffer, data, bytes, cudaMemcpyHostToDevice, s.stream));
  s.statistics->allreduce_sum(s.statistics_buffer, count, s.stream);
  CUDA_CHECK(cudaMemcpyAsync(data, s.statistics_buffer, bytes, cudaMemcpyDeviceToHost, s.stream));
  const watchdog::Wait wait("a sum of batch-norm statistics over ranks (NCCL)");
  CUDA_CHECK(cudaStreamSynchronize(s.stream));
}

#else  // CPU-only build

struct NcclReducer::State {};

NcclReducer::NcclReducer(ParameterRegistry& /*params*/, const Communicator& /*comm*/,
                         const ParallelConfig& /*options*/, Timeline* /*timeline*/) {
  PDEGEN_THROW(
      "cannot create the NCCL gradient reducer: this pdegen was built without the CUDA backend (configure "
      "with the 'cuda' preset or -DPDEGEN_CUDA=ON)");
}
NcclReducer::~NcclReducer() = default;
void NcclReducer::begin_backward(bool /*communicate*/) { PDEGEN_THROW("NCCL reducer: no CUDA backend"); }
void NcclReducer::finish() { PDEGEN_THROW("NCCL reducer: no CUDA backend"); }
const BucketSchedule& NcclReducer::schedule() const { PDEGEN_THROW("NCCL reducer: no CUDA backend"); }
const ReducerStats& NcclReducer::stats() const { PDEGEN_THROW("NCCL reducer: no CUDA backend"); }
bool NcclReducer::hierarchical() const { PDEGEN_THROW("NCCL reducer: no CUDA backend"); }
std::string NcclReducer::describe() const { PDEGEN_THROW("NCCL reducer: no CUDA backend"); }
void NcclReducer::allreduce_statistics(double*, int) { PDEGEN_THROW("NCCL reducer: no CUDA backend"); }

#endif  // PDEGEN_HAVE_CUDA

}  // namespace pdegen

// The gradient reducer, the bucket schedule, the communicator's collectives and the replica checksum.
// Runs alone (one rank: schedule properties, nothing to reduce) and under mpiexec.mpich -n 2, 3, 4,
// where every rank checks the sums over all ranks. Gradients hold small integers times 2^-4, whose
// fp32 sums are exact in any order: so every bucket size, overlap on or off and the hierarchical
// path must give EXACTLY the same numbers, whatever algorithm MPI picks for each message size.
// The reducer cases run on every device of reducer_devices(): the MpiReducer on host gradients,
// the NcclReducer on GPU gradients (filled on the host, copied in, reduced, copied back), with the
// same checks; the GPU half is skipped with the reason where NCCL cannot run this job's layout.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <thread>

#include "backend/cuda/cuda_context.hpp"
#include "backends.hpp"
#include "mpi_session.hpp"
#include "parallel/bucket_schedule.hpp"
#include "parallel/consistency.hpp"
#include "parallel/mpi_reducer.hpp"
#include "parallel/nccl_communicator.hpp"
#include "parallel/nccl_reducer.hpp"
#include "testing.hpp"

using namespace pdegen;

namespace {

const Communicator& world() {
  static const Communicator comm(testing::mpi_world());
  return comm;
}

// The devices the reducer cases run on: the CPU, and the GPU where this binary and machine have one
// AND NCCL can run the job's layout (a GPU per rank). Collective on first use (every rank calls it
// in the same test); every call records why the GPU half is skipped.
const std::vector<Device>& reducer_devices() {
  static std::string nccl_unusable;
  static const std::vector<Device> devices = [] {
    std::vector<Device> d = testing::test_devices();
    const int node_rank = world().node_local().rank();  // collective: before any rank-dependent branch
    const bool gpu = std::find(d.begin(), d.end(), Device::cuda) != d.end();
    if (gpu) cuda::select_device(node_rank);
    std::string reason;
    const bool usable = nccl_usable(world(), &reason);  // collective in CUDA builds
    if (gpu && !usable) {
      d = {Device::cpu};
      nccl_unusable = "cuda: NCCL reducer cases (" + reason + ")";
    }
    return d;
  }();
  testing::test_devices();  // records the GPU's skip reason for this case, if any
  if (!nccl_unusable.empty()) testing::skip_reason(nccl_unusable);
  return devices;
}

// Parameters of assorted sizes (some not multiples of the 16-element alignment), registered in
// forward order like a network's, with their flat buffers on `device`.
void add_parameters(ParameterRegistry& reg, int64_t scale = 1, Device device = Device::cpu) {
  const int64_t sizes[] = {7, 300 * scale, 16, 1000 * scale, 1, 4096 * scale, 33, 20000 * scale, 5};
  int i = 0;
  for (int64_t n : sizes) reg.add(fmt::format("layer{}.weight", i++), Shape{n}, ParamInit::constant_value(0));
  reg.finalize(1, device);
}

// The flat gradient buffer as host memory: the buffer itself on the CPU, a copy of a GPU one (read
// after cuda::synchronize(), so that the reduction the compute stream waits for is in).
Tensor host_grads(const ParameterRegistry& reg) {
  cuda::synchronize();
  return reg.flat_grads().to(Device::cpu);
}

// Writes a host copy back into a GPU buffer (a host buffer was written in place).
void store_grads(const ParameterRegistry& reg, const Tensor& host) {
  if (reg.flat_grads().device() == Device::cpu) return;
  Tensor grads = reg.flat_grads();
  grads.copy_from(host);
}

// Gradient value of element e on rank r: a small integer times 2^-4, exact in fp32 sums.
float grad_value(int64_t e, int r) { return static_cast<float>((e * 7 + r * 13) % 97 - 48) / 16.0f; }

void fill_gradients(ParameterRegistry& reg, int rank, float factor = 1) {
  const Tensor host = host_grads(reg);
  float* g = host.data<float>();
  for (const Parameter& p : reg.params())
    for (int64_t i = 0; i < p.shape.numel(); ++i) g[p.offset + i] += factor * grad_value(p.offset + i, rank);
  store_grads(reg, host);
}

float expected_sum(int64_t e, int ranks, float factor = 1) {
  float s = 0;
  for (int r = 0; r < ranks; ++r) s += factor * grad_value(e, r);
  return s;
}

// Buckets of 1-4 KB: several per test registry, so multi-bucket paths run.
ParallelConfig small_buckets() {
  ParallelConfig options;
  options.bucket_mb = 0.004;
  options.first_bucket_mb = 0.001;
  return options;
}

// Reports every parameter ready in backward order, as layers do.
void run_backward(ParameterRegistry& reg) {
  for (ParameterRegistry::Id id : reg.backward_order()) reg.grad_ready(id);
}

int64_t mismatches(const ParameterRegistry& reg, int ranks, float factor = 1) {
  const Tensor host = host_grads(reg);
  const float* g = host.data<float>();
  int64_t bad = 0;
  for (const Parameter& p : reg.params())
    for (int64_t i = 0; i < p.shape.numel(); ++i)
      bad += g[p.offset + i] != expected_sum(p.offset + i, ranks, factor);
  return bad;
}

}  // namespace

TEST_CASE("bucket schedule: contiguous buckets in backward order, never splitting a parameter") {
  ParameterRegistry reg;
  add_parameters(reg, 10);
  const double mb = 0.1, first = 0.01;  // 26214 and 2621 fp32 elements
  const BucketSchedule s = make_bucket_schedule(reg, mb, first);
  REQUIRE(s.buckets.size() >= 3);
  CHECK(s.buckets.front().begin == 0);
  CHECK(s.buckets.back().end == reg.flat_grads().numel());
  const auto order = reg.backward_order();
  size_t k = 0;
  for (size_t b = 0; b < s.buckets.size(); ++b) {
    const Bucket& bucket = s.buckets[b];
    if (b > 0) CHECK(bucket.begin == s.buckets[b - 1].end);
    const int64_t limit = static_cast<int64_t>((b == 0 ? first : mb) * 1024 * 1024 / 4);
    int64_t before_last = 0;
    for (size_t j = 0; j < bucket.params.size(); ++j, ++k) {
      REQUIRE(k < order.size());
      CHECK(bucket.params[j] == order[k]);  // backward order, nothing skipped or repeated
      const Parameter& p = reg.param(bucket.params[j]);
      CHECK(p.offset >= bucket.begin);
      CHECK(p.offset + p.shape.numel() <= bucket.end);  // the whole parameter inside
      CHECK(s.bucket_of[static_cast<size_t>(bucket.params[j])] == static_cast<int>(b));
      if (j + 1 < bucket.params.size()) before_last = p.offset + p.shape.numel() - bucket.begin;
    }
    CHECK(before_last < limit);  // a bucket closes as soon as it reaches its limit
  }
  CHECK(k == order.size());
}

TEST_CASE("bucket schedule: the hash depends on shapes, names and boundaries") {
  ParameterRegistry a, b, c;
  add_parameters(a);
  add_parameters(b);
  a.finalized();
  CHECK(make_bucket_schedule(a, 1, 0.01).hash == make_bucket_schedule(b, 1, 0.01).hash);
  CHECK(make_bucket_schedule(a, 1, 0.01).hash != make_bucket_schedule(a, 0.01, 0.01).hash);
  c.add("layer0.weight", Shape{8}, ParamInit::constant_value(0));
  c.finalize(1);
  CHECK(make_bucket_schedule(a, 1, 0.01).hash != make_bucket_schedule(c, 1, 0.01).hash);
}

TEST_CASE("communicator: allgather and reduce_scatter over uneven shares") {
  const Communicator& comm = world();
  const int P = comm.size(), me = comm.rank();
  for (int64_t n : {int64_t{1}, int64_t{5}, int64_t{1001}}) {
    std::vector<float> data(static_cast<size_t>(n), -1.0f);
    const Share mine = share_of(n, me, P);
    for (int64_t i = mine.begin; i < mine.end; ++i) data[static_cast<size_t>(i)] = static_cast<float>(i);
    comm.allgather(data.data(), n);
    for (int64_t i = 0; i < n; ++i) CHECK(data[static_cast<size_t>(i)] == static_cast<float>(i));

    for (int64_t i = 0; i < n; ++i) data[static_cast<size_t>(i)] = static_cast<float>(i + me);
    comm.reduce_scatter_sum(data.data(), n);
    for (int64_t i = mine.begin; i < mine.end; ++i)
      CHECK(data[static_cast<size_t>(i)] == static_cast<float>(P * i + P * (P - 1) / 2));
  }
}

TEST_CASE("reducer: the same exact sums for every bucket size, with and without overlap") {
  const Communicator& comm = world();
  for (Device device : reducer_devices()) {
    for (bool overlap : {false, true}) {
      for (double mb : {0.0005, 0.004, 0.05, 25.0}) {
        CAPTURE(device_name(device));
        CAPTURE(overlap);
        CAPTURE(mb);
        ParameterRegistry reg;
        add_parameters(reg, 1, device);
        ParallelConfig options;
        options.bucket_mb = mb;
        options.first_bucket_mb = mb / 4;
        options.overlap = overlap;
        options.hierarchical = Hierarchical::off;
        const auto reducer = make_reducer(reg, comm, options);
        for (int step = 0; step < 3; ++step) {  // buffers and state reused across steps
          reg.zero_grads();
          reducer->begin_backward(true);
          fill_gradients(reg, comm.rank());
          run_backward(reg);
          reducer->finish();
          CHECK(mismatches(reg, comm.size()) == 0);
        }
        CHECK(reducer->stats().steps == (comm.size() > 1 ? 3 : 0));
        // The GPU's times come from events, complete after the synchronising copy above.
        if (comm.size() > 1) CHECK(reducer->stats().comm_seconds > 0);
      }
    }
  }
}

TEST_CASE("reducer: buckets launch during backward, before finish()") {
  const Communicator& comm = world();
  if (comm.size() == 1)
    return testing::skip_reason("nothing is communicated on one rank (mpi_reducer_np2-4 run it)");
  ParameterRegistry reg;
  add_parameters(reg, 10);
  ParallelConfig options;
  options.bucket_mb = 0.05;
  options.first_bucket_mb = 0.005;
  options.hierarchical = Hierarchical::off;
  Timeline timeline;
  timeline.start_clock();
  timeline.set_active(true);
  MpiReducer reducer(reg, comm, options, &timeline);
  REQUIRE(reducer.schedule().buckets.size() >= 2);
  reg.zero_grads();
  reducer.begin_backward(true);
  fill_gradients(reg, comm.rank());
  run_backward(reg);
  // "Backward" goes on for a while: the communication thread must not wait for finish().
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const double finish_called = timeline.now_us();
  reducer.finish();
  CHECK(mismatches(reg, comm.size()) == 0);
  const std::string events = timeline.events_json(comm.rank());
  // Every bucket has its event, and the first one started long before finish() was called.
  for (size_t b = 0; b < reducer.schedule().buckets.size(); ++b)
    CHECK(events.find(fmt::format("\"bucket {}\"", b)) != std::string::npos);
  const auto at = events.find("\"bucket 0\"");
  const auto ts = events.find("\"ts\": ", at);
  REQUIRE(ts != std::string::npos);
  CHECK(std::stod(events.substr(ts + 6)) < finish_called - 100000);  // > 0.1 s before
  CHECK(reducer.stats().exposed_fraction() < 0.5);
}

TEST_CASE("reducer: micro-batches accumulate locally and communicate once") {
  const Communicator& comm = world();
  for (Device device : reducer_devices()) {
    CAPTURE(device_name(device));
    ParameterRegistry reg;
    add_parameters(reg, 1, device);
    ParallelConfig options = small_buckets();
    const auto reducer = make_reducer(reg, comm, options);
    reg.zero_grads();
    reducer->begin_backward(false);
    fill_gradients(reg, comm.rank());
    run_backward(reg);
    // Nothing communicated yet: this rank's own values.
    const Tensor host = host_grads(reg);
    int64_t own = 0;
    for (const Parameter& p : reg.params())
      for (int64_t i = 0; i < p.shape.numel(); ++i)
        own += host.data<float>()[p.offset + i] != grad_value(p.offset + i, comm.rank());
    CHECK(own == 0);
    reducer->begin_backward(true);
    fill_gradients(reg, comm.rank());
    run_backward(reg);
    reducer->finish();
    CHECK(mismatches(reg, comm.size(), 2) == 0);
    CHECK(reducer->stats().steps == (comm.size() > 1 ? 1 : 0));
  }
}

TEST_CASE("reducer: statistics summed in the middle of a backward, between bucket launches") {
  // Synchronized batch norm's path: its sums go through the reducer while buckets are in flight.
  const Communicator& comm = world();
  for (Device device : reducer_devices()) {
    CAPTURE(device_name(device));
    ParameterRegistry reg;
    add_parameters(reg, 1, device);
    const auto reducer = make_reducer(reg, comm, small_buckets());
    for (int step = 0; step < 2; ++step) {
      reg.zero_grads();
      reducer->begin_backward(true);
      fill_gradients(reg, comm.rank());
      const std::vector<ParameterRegistry::Id> order = reg.backward_order();
      const size_t first_part = order.size() / 2;
      for (size_t k = 0; k < first_part; ++k) reg.grad_ready(order[k]);
      std::vector<double> stats(5);
      for (size_t k = 0; k < stats.size(); ++k) stats[k] = 0.25 * static_cast<double>(comm.rank() + 1) + k;
      reducer->allreduce_statistics(stats.data(), static_cast<int>(stats.size()));
      const double P = comm.size();
      for (size_t k = 0; k < stats.size(); ++k) CHECK(stats[k] == 0.25 * P * (P + 1) / 2 + P * k);
      for (size_t k = first_part; k < order.size(); ++k) reg.grad_ready(order[k]);
      reducer->finish();
      CHECK(mismatches(reg, comm.size()) == 0);
    }
  }
}

TEST_CASE("reducer: a rank whose backward reports nothing still takes part") {
  const Communicator& comm = world();
  for (Device device : reducer_devices()) {
    CAPTURE(device_name(device));
    ParameterRegistry reg;
    add_parameters(reg, 1, device);
    ParallelConfig options = small_buckets();
    const auto reducer = make_reducer(reg, comm, options);
    reg.zero_grads();
    reducer->begin_backward(true);
    // The last rank has no samples in this micro-batch: no backward, zero gradient.
    const bool idle = comm.rank() == comm.size() - 1 && comm.size() > 1;
    if (!idle) {
      fill_gradients(reg, comm.rank());
      run_backward(reg);
    }
    reducer->finish();
    const Tensor host = host_grads(reg);
    int64_t bad = 0;
    for (const Parameter& p : reg.params())
      for (int64_t i = 0; i < p.shape.numel(); ++i) {
        float s = 0;
        for (int r = 0; r < comm.size() - (comm.size() > 1 ? 1 : 0); ++r) s += grad_value(p.offset + i, r);
        bad += host.data<float>()[p.offset + i] != s;
      }
    CHECK(bad == 0);
  }
}

TEST_CASE("reducer: hierarchical reduction (simulated nodes) gives the exact sums") {
  const Communicator& comm = world();
  if (comm.size() < 2) return testing::skip_reason("needs 2 or more ranks (mpi_reducer_np2-4 run it)");
  // Two ranks per "node": 2 ranks = one node, 3 = uneven (auto falls back to flat, on refuses), 4 = two
  // nodes.
  const std::vector<Device> devices = reducer_devices();  // before the simulated nodes are set
  setenv("PDEGEN_SIMULATED_NODE_SIZE", "2", 1);
  for (Device device : devices) {
    for (Hierarchical mode : {Hierarchical::automatic, Hierarchical::on}) {
      for (bool overlap : {false, true}) {
        CAPTURE(device_name(device));
        CAPTURE(overlap);
        ParameterRegistry reg;
        add_parameters(reg, 1, device);
        ParallelConfig options = small_buckets();
        options.overlap = overlap;
        options.hierarchical = mode;
        if (comm.size() == 3 && mode == Hierarchical::on) {
          CHECK_THROWS_WITH_AS(make_reducer(reg, comm, options),
                               doctest::Contains("same number of ranks on every node"), UserError);
          continue;
        }
        const auto reducer = make_reducer(reg, comm, options);
        CHECK(reducer->hierarchical() == (mode == Hierarchical::on || comm.size() == 4));
        reg.zero_grads();
        reducer->begin_backward(true);
        fill_gradients(reg, comm.rank());
        run_backward(reg);
        reducer->finish();
        CHECK(mismatches(reg, comm.size()) == 0);
      }
    }
  }
  unsetenv("PDEGEN_SIMULATED_NODE_SIZE");
}

TEST_CASE("reducer: fp16 and bf16 wire compression, fp32 sums, identical on every rank") {
  const Communicator& comm = world();
  // The flat-form results on the CPU, which the GPU must reproduce bit for bit (same algorithm,
  // same shared 16-bit conversions, sums in rank order).
  std::map<Compression, Tensor> cpu_flat;
  for (Device device : reducer_devices()) {
    for (Compression c : {Compression::fp16, Compression::bf16}) {
      for (Hierarchical h : {Hierarchical::off, Hierarchical::on}) {
        CAPTURE(device_name(device));
        CAPTURE(h == Hierarchical::on);
        ParameterRegistry reg;
        add_parameters(reg, 1, device);
        ParallelConfig options = small_buckets();
        options.compression = c;
        options.hierarchical = h;
        if (h == Hierarchical::on && comm.size() == 3) continue;
        if (h == Hierarchical::on) setenv("PDEGEN_SIMULATED_NODE_SIZE", "2", 1);
        const auto reducer = make_reducer(reg, comm, options);
        unsetenv("PDEGEN_SIMULATED_NODE_SIZE");
        // Values with more bits than 16-bit formats hold.
        reg.zero_grads();
        reducer->begin_backward(true);
        {
          const Tensor host = host_grads(reg);
          for (const Parameter& p : reg.params())
            for (int64_t i = 0; i < p.shape.numel(); ++i)
              host.data<float>()[p.offset + i] =
                  std::sin(0.001f * static_cast<float>(p.offset + i) + 0.7f * comm.rank());
          store_grads(reg, host);
        }
        run_backward(reg);
        reducer->finish();
        const Tensor result = host_grads(reg);
        // Each addend is rounded once (relative 2^-11 fp16, 2^-8 bf16), the sum once more.
        const double eps = c == Compression::fp16 ? 1.0 / 2048 : 1.0 / 256;
        double worst = 0;
        for (const Parameter& p : reg.params())
          for (int64_t i = 0; i < p.shape.numel(); ++i) {
            double exact = 0, magnitude = 0;
            for (int r = 0; r < comm.size(); ++r) {
              const double v = std::sin(0.001f * static_cast<float>(p.offset + i) + 0.7f * r);
              exact += v;
              magnitude += std::abs(v);
            }
            const double err = std::abs(result.data<float>()[p.offset + i] - exact);
            worst = std::max(worst, err / (eps * (magnitude + std::abs(exact)) + 1e-30));
          }
        CHECK(worst <= 1.0);
        // Bitwise the same gradient everywhere.
        CHECK_NOTHROW(check_replicas_identical(state_checksum({&result}), comm, 0));
        if (h == Hierarchical::off && device == Device::cpu) cpu_flat[c] = result.clone();
        if (h == Hierarchical::off && device != Device::cpu) {
          REQUIRE(cpu_flat.count(c) == 1);
          CHECK(state_checksum({&result}) == state_checksum({&cpu_flat[c]}));
        }
      }
    }
  }
}

TEST_CASE("reducer: ranks with different networks stop with an error naming the parameter") {
  const Communicator& comm = world();
  for (Device device : reducer_devices()) {
    CAPTURE(device_name(device));
    ParameterRegistry reg;
    const int64_t n = comm.rank() == 1 ? 301 : 300;  // rank 1 built another network
    reg.add("encoder.conv0.weight", Shape{7}, ParamInit::constant_value(0));
    reg.add("encoder.conv1.weight", Shape{n}, ParamInit::constant_value(0));
    reg.add("head.weight", Shape{16}, ParamInit::constant_value(0));
    reg.finalize(1, device);
    if (comm.size() == 1) {
      CHECK_NOTHROW(make_reducer(reg, comm, ParallelConfig{}));
      continue;
    }
    // Every rank throws (no hang); the message names the parameter.
    CHECK_THROWS_WITH(make_reducer(reg, comm, ParallelConfig{}), doctest::Contains("encoder.conv1.weight"));

    // A different parameter COUNT is found too.
    ParameterRegistry other;
    other.add("a.weight", Shape{4}, ParamInit::constant_value(0));
    if (comm.rank() == 0) other.add("b.weight", Shape{4}, ParamInit::constant_value(0));
    other.finalize(1, device);
    CHECK_THROWS_WITH(make_reducer(other, comm, ParallelConfig{}), doctest::Contains("schedules differ"));
  }
}

TEST_CASE("make_reducer: the MpiReducer for host gradients, the NCCL reducer for GPU gradients") {
  const Communicator& comm = world();
  for (Device device : reducer_devices()) {
    CAPTURE(device_name(device));
    ParameterRegistry reg;
    add_parameters(reg, 1, device);
    const auto reducer = make_reducer(reg, comm, small_buckets());
    if (device == Device::cpu) {
      CHECK(dynamic_cast<MpiReducer*>(reducer.get()) != nullptr);
      CHECK(reducer->describe().find("NCCL") == std::string::npos);
    } else {
      CHECK(dynamic_cast<NcclReducer*>(reducer.get()) != nullptr);
      CHECK(reducer->describe().find("NCCL") != std::string::npos);
    }
    CHECK(reducer->schedule().buckets.size() > 1);
  }
#ifndef PDEGEN_HAVE_CUDA
  // A CPU-only build says plainly that NCCL is not there, on every rank alike.
  std::string reason;
  CHECK_FALSE(nccl_usable(comm, &reason));
  CHECK(reason.find("built without the CUDA backend") != std::string::npos);
  CHECK_THROWS_WITH(NcclCommunicator{comm}, doctest::Contains("built without the CUDA backend"));
  ParameterRegistry reg;
  add_parameters(reg);
  CHECK_THROWS_WITH(NcclReducer(reg, comm, ParallelConfig{}),
                    doctest::Contains("built without the CUDA backend"));
#endif
}

TEST_CASE("NCCL communicator: sums, equal-shard collectives, point to point and the host allreduce") {
  const std::vector<Device> devices = reducer_devices();
  if (std::find(devices.begin(), devices.end(), Device::cuda) == devices.end()) return;  // reason recorded
#ifdef PDEGEN_HAVE_CUDA
  const Communicator& comm = world();
  NcclCommunicator nccl(comm);
  const int P = comm.size(), me = comm.rank();
  CHECK(nccl.rank() == me);
  CHECK(nccl.size() == P);
  const GpuStream stream = cuda::stream();
  auto on_gpu = [](const std::vector<float>& v) {
    Tensor host = Tensor::empty(Shape{static_cast<int64_t>(v.size())});
    std::copy(v.begin(), v.end(), host.data<float>());
    return host.to(Device::cuda);
  };
  auto on_host = [](const Tensor& t) {
    const Tensor host = t.to(Device::cpu);  // synchronises the stream
    return std::vector<float>(host.data<float>(), host.data<float>() + host.numel());
  };
  const int64_t shard = 5, n = shard * P;
  // allreduce: element i of rank r holds i + r.
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = static_cast<float>(i + me);
  Tensor t = on_gpu(v);
  nccl.allreduce_sum(t.data<float>(), n, stream);
  std::vector<float> out = on_host(t);
  for (int64_t i = 0; i < n; ++i)
    CHECK(out[static_cast<size_t>(i)] == static_cast<float>(P * i + P * (P - 1) / 2));
  // reduce-scatter leaves this rank's shard of the sums; allgather of (rank's shard = its index) restores
  // all.
  t = on_gpu(v);
  nccl.reduce_scatter_sum(t.data<float>(), shard, stream);
  out = on_host(t);
  for (int64_t i = me * shard; i < (me + 1) * shard; ++i)
    CHECK(out[static_cast<size_t>(i)] == static_cast<float>(P * i + P * (P - 1) / 2));
  std::vector<float> mine(static_cast<size_t>(n), -1.0f);
  for (int64_t i = me * shard; i < (me + 1) * shard; ++i)
    mine[static_cast<size_t>(i)] = static_cast<float>(i);
  t = on_gpu(mine);
  nccl.allgather(t.data<float>(), shard, stream);
  out = on_host(t);
  for (int64_t i = 0; i < n; ++i) CHECK(out[static_cast<size_t>(i)] == static_cast<float>(i));
  // A ring exchange: each rank sends its rank to the next and receives from the previous.
  if (P > 1) {
    Tensor send = on_gpu({static_cast<float>(me)}), recv = on_gpu({-1.0f});
    NcclCommunicator::group_start();
    nccl.send(send.data<float>(), sizeof(float), (me + 1) % P, stream);
    nccl.recv(recv.data<float>(), sizeof(float), (me + P - 1) % P, stream);
    NcclCommunicator::group_end();
    CHECK(on_host(recv)[0] == static_cast<float>((me + P - 1) % P));
  }
  // The synchronized batch norm's hook: host doubles in, sums out, after the call returns.
  double stats[3] = {0.5 * me, 1.0, -0.25 * me};
  nccl.allreduce_sum_host(stats, 3);
  CHECK(stats[0] == 0.25 * P * (P - 1));
  CHECK(stats[1] == static_cast<double>(P));
  CHECK(stats[2] == -0.125 * P * (P - 1));
#endif
}

TEST_CASE("replica checksum: identical replicas pass, one changed bit on one rank stops every rank") {
  const Communicator& comm = world();
  Tensor t = Tensor::zeros(Shape{1000});
  for (int64_t i = 0; i < 1000; ++i) t.data<float>()[i] = static_cast<float>(i) * 0.25f;
  CHECK_NOTHROW(check_replicas_identical(state_checksum({&t}), comm, 10));
  // Position sensitivity: swapping two different values changes the checksum.
  Tensor swapped = t.clone();
  std::swap(swapped.data<float>()[3], swapped.data<float>()[700]);
  CHECK(state_checksum({&t}) != state_checksum({&swapped}));
  if (comm.size() == 1) return testing::skip_reason("needs 2 or more ranks (mpi_reducer_np2-4 run it)");
  if (comm.rank() == comm.size() - 1) {
    uint32_t bits;
    std::memcpy(&bits, &t.data<float>()[517], 4);
    bits ^= 1u;  // the last mantissa bit
    std::memcpy(&t.data<float>()[517], &bits, 4);
  }
  CHECK_THROWS_WITH(check_replicas_identical(state_checksum({&t}), comm, 10),
                    doctest::Contains("replica drift"));
}

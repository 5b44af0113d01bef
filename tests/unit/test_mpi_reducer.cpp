// The gradient reducer, the bucket schedule, the communicator's collectives and the replica checksum.
// Runs alone (one rank: schedule properties, nothing to reduce) and under mpiexec.mpich -n 2, 3, 4,
// where every rank checks the sums over all ranks. Gradients hold small integers times 2^-4, whose
// fp32 sums are exact in any order: so every bucket size, overlap on or off and the hierarchical
// path must give EXACTLY the same numbers, whatever algorithm MPI picks for each message size.
#include <cmath>
#include <cstdlib>
#include <thread>

#include "mpi_session.hpp"
#include "parallel/bucket_schedule.hpp"
#include "parallel/consistency.hpp"
#include "parallel/reducer.hpp"
#include "testing.hpp"

using namespace pdegen;

namespace {

const Communicator& world() {
  static const Communicator comm(testing::mpi_world());
  return comm;
}

// Parameters of assorted sizes (some not multiples of the 16-element alignment), registered in
// forward order like a network's.
void add_parameters(ParameterRegistry& reg, int64_t scale = 1) {
  const int64_t sizes[] = {7, 300 * scale, 16, 1000 * scale, 1, 4096 * scale, 33, 20000 * scale, 5};
  int i = 0;
  for (int64_t n : sizes) reg.add(fmt::format("layer{}.weight", i++), Shape{n}, ParamInit::constant_value(0));
  reg.finalize(1);
}

// Gradient value of element e on rank r: a small integer times 2^-4, exact in fp32 sums.
float grad_value(int64_t e, int r) { return static_cast<float>((e * 7 + r * 13) % 97 - 48) / 16.0f; }

void fill_gradients(ParameterRegistry& reg, int rank, float factor = 1) {
  for (const Parameter& p : reg.params()) {
    float* g = p.grad.data<float>();
    for (int64_t i = 0; i < p.shape.numel(); ++i) g[i] += factor * grad_value(p.offset + i, rank);
  }
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
  int64_t bad = 0;
  for (const Parameter& p : reg.params()) {
    const float* g = p.grad.data<float>();
    for (int64_t i = 0; i < p.shape.numel(); ++i) bad += g[i] != expected_sum(p.offset + i, ranks, factor);
  }
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
  for (bool overlap : {false, true}) {
    for (double mb : {0.0005, 0.004, 0.05, 25.0}) {
      CAPTURE(overlap);
      CAPTURE(mb);
      ParameterRegistry reg;
      add_parameters(reg);
      ParallelConfig options;
      options.bucket_mb = mb;
      options.first_bucket_mb = mb / 4;
      options.overlap = overlap;
      options.hierarchical = Hierarchical::off;
      Reducer reducer(reg, comm, options);
      for (int step = 0; step < 3; ++step) {  // buffers and state reused across steps
        reg.zero_grads();
        reducer.begin_backward(true);
        fill_gradients(reg, comm.rank());
        run_backward(reg);
        reducer.finish();
        CHECK(mismatches(reg, comm.size()) == 0);
      }
      CHECK(reducer.stats().steps == (comm.size() > 1 ? 3 : 0));
    }
  }
}

TEST_CASE("reducer: buckets launch during backward, before finish()") {
  const Communicator& comm = world();
  if (comm.size() == 1) return;  // nothing is communicated on one rank
  ParameterRegistry reg;
  add_parameters(reg, 10);
  ParallelConfig options;
  options.bucket_mb = 0.05;
  options.first_bucket_mb = 0.005;
  options.hierarchical = Hierarchical::off;
  Timeline timeline;
  timeline.start_clock();
  timeline.set_active(true);
  Reducer reducer(reg, comm, options, &timeline);
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
  ParameterRegistry reg;
  add_parameters(reg);
  ParallelConfig options = small_buckets();
  Reducer reducer(reg, comm, options);
  reg.zero_grads();
  reducer.begin_backward(false);
  fill_gradients(reg, comm.rank());
  run_backward(reg);
  // Nothing communicated yet: this rank's own values.
  int64_t own = 0;
  for (const Parameter& p : reg.params())
    for (int64_t i = 0; i < p.shape.numel(); ++i)
      own += p.grad.data<float>()[i] != grad_value(p.offset + i, comm.rank());
  CHECK(own == 0);
  reducer.begin_backward(true);
  fill_gradients(reg, comm.rank());
  run_backward(reg);
  reducer.finish();
  CHECK(mismatches(reg, comm.size(), 2) == 0);
  CHECK(reducer.stats().steps == (comm.size() > 1 ? 1 : 0));
}

TEST_CASE("reducer: a rank whose backward reports nothing still takes part") {
  const Communicator& comm = world();
  ParameterRegistry reg;
  add_parameters(reg);
  ParallelConfig options = small_buckets();
  Reducer reducer(reg, comm, options);
  reg.zero_grads();
  reducer.begin_backward(true);
  // The last rank has no samples in this micro-batch: no backward, zero gradient.
  const bool idle = comm.rank() == comm.size() - 1 && comm.size() > 1;
  if (!idle) {
    fill_gradients(reg, comm.rank());
    run_backward(reg);
  }
  reducer.finish();
  int64_t bad = 0;
  for (const Parameter& p : reg.params())
    for (int64_t i = 0; i < p.shape.numel(); ++i) {
      float s = 0;
      for (int r = 0; r < comm.size() - (comm.size() > 1 ? 1 : 0); ++r) s += grad_value(p.offset + i, r);
      bad += p.grad.data<float>()[i] != s;
    }
  CHECK(bad == 0);
}

TEST_CASE("reducer: hierarchical reduction (simulated nodes) gives the exact sums") {
  const Communicator& comm = world();
  if (comm.size() < 2) return;
  // Two ranks per "node": 2 ranks = one node, 3 = uneven (auto falls back to flat, on refuses), 4 = two
  // nodes.
  setenv("PDEGEN_SIMULATED_NODE_SIZE", "2", 1);
  for (Hierarchical mode : {Hierarchical::automatic, Hierarchical::on}) {
    for (bool overlap : {false, true}) {
      ParameterRegistry reg;
      add_parameters(reg);
      ParallelConfig options = small_buckets();
      options.overlap = overlap;
      options.hierarchical = mode;
      if (comm.size() == 3 && mode == Hierarchical::on) {
        CHECK_THROWS_WITH_AS(Reducer(reg, comm, options),
                             doctest::Contains("same number of ranks on every node"), UserError);
        continue;
      }
      Reducer reducer(reg, comm, options);
      CHECK(reducer.hierarchical() == (mode == Hierarchical::on || comm.size() == 4));
      reg.zero_grads();
      reducer.begin_backward(true);
      fill_gradients(reg, comm.rank());
      run_backward(reg);
      reducer.finish();
      CHECK(mismatches(reg, comm.size()) == 0);
    }
  }
  unsetenv("PDEGEN_SIMULATED_NODE_SIZE");
}

TEST_CASE("reducer: fp16 and bf16 wire compression, fp32 sums, identical on every rank") {
  const Communicator& comm = world();
  for (Compression c : {Compression::fp16, Compression::bf16}) {
    for (Hierarchical h : {Hierarchical::off, Hierarchical::on}) {
      ParameterRegistry reg;
      add_parameters(reg);
      ParallelConfig options = small_buckets();
      options.compression = c;
      options.hierarchical = h;
      if (h == Hierarchical::on) setenv("PDEGEN_SIMULATED_NODE_SIZE", "2", 1);
      if (h == Hierarchical::on && comm.size() == 3) {
        unsetenv("PDEGEN_SIMULATED_NODE_SIZE");
        continue;
      }
      Reducer reducer(reg, comm, options);
      unsetenv("PDEGEN_SIMULATED_NODE_SIZE");
      // Values with more bits than 16-bit formats hold.
      reg.zero_grads();
      reducer.begin_backward(true);
      for (const Parameter& p : reg.params())
        for (int64_t i = 0; i < p.shape.numel(); ++i)
          p.grad.data<float>()[i] = std::sin(0.001f * static_cast<float>(p.offset + i) + 0.7f * comm.rank());
      run_backward(reg);
      reducer.finish();
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
          const double err = std::abs(p.grad.data<float>()[i] - exact);
          worst = std::max(worst, err / (eps * (magnitude + std::abs(exact)) + 1e-30));
        }
      CHECK(worst <= 1.0);
      // Bitwise the same gradient everywhere.
      CHECK_NOTHROW(check_replicas_identical(state_checksum({&reg.flat_grads()}), comm, 0));
    }
  }
}

TEST_CASE("reducer: ranks with different networks stop with an error naming the parameter") {
  const Communicator& comm = world();
  ParameterRegistry reg;
  const int64_t n = comm.rank() == 1 ? 301 : 300;  // rank 1 built another network
  reg.add("encoder.conv0.weight", Shape{7}, ParamInit::constant_value(0));
  reg.add("encoder.conv1.weight", Shape{n}, ParamInit::constant_value(0));
  reg.add("head.weight", Shape{16}, ParamInit::constant_value(0));
  reg.finalize(1);
  if (comm.size() == 1) {
    CHECK_NOTHROW(Reducer(reg, comm, ParallelConfig{}));
    return;
  }
  // Every rank throws (no hang); the message names the parameter.
  CHECK_THROWS_WITH(Reducer(reg, comm, ParallelConfig{}), doctest::Contains("encoder.conv1.weight"));

  // A different parameter COUNT is found too.
  ParameterRegistry other;
  other.add("a.weight", Shape{4}, ParamInit::constant_value(0));
  if (comm.rank() == 0) other.add("b.weight", Shape{4}, ParamInit::constant_value(0));
  other.finalize(1);
  CHECK_THROWS_WITH(Reducer(other, comm, ParallelConfig{}), doctest::Contains("schedules differ"));
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
  if (comm.size() == 1) return;
  if (comm.rank() == comm.size() - 1) {
    uint32_t bits;
    std::memcpy(&bits, &t.data<float>()[517], 4);
    bits ^= 1u;  // the last mantissa bit
    std::memcpy(&t.data<float>()[517], &bits, 4);
  }
  CHECK_THROWS_WITH(check_replicas_identical(state_checksum({&t}), comm, 10),
                    doctest::Contains("replica drift"));
}

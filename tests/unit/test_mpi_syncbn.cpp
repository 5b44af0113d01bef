// Synchronized batch norm over MPI: BatchNorm with its StatsAllreduce hook wired to a Communicator
// on P ranks, each holding share_of(B, rank, P) of one union batch, against BatchNorm on one process
// with the whole batch (and against the fp64 reference and central differences of it). Runs alone
// and under `mpiexec.mpich -n P` (ctest: P = 2, 3, 4). Every rank builds the union batch and the
// single-process layer itself from the same seeds, so nothing but the statistics is communicated.
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "mpi_session.hpp"
#include "nn/batch_norm.hpp"
#include "parallel/communicator.hpp"
#include "testing.hpp"

using namespace pdegen;
using namespace pdegen::testing;

namespace {

constexpr double eps = 1e-5;
constexpr double momentum = 0.3;  // large, so that a wrong batch statistic shows in the running ones

// The synchronized layer against the single-process one: both compute the statistics in double
// from the same fp32 values, only summed in another order (per rank, then over ranks), so mean and
// inv_std agree to a few double ulps and the fp32 outputs, dx and running statistics to 1-2 fp32
// ulps (~1e-7 of the scale). The parameter gradients are the one place with fp32 sums in another
// order: each rank rounds its partial sum to fp32 and the ranks add P of them in fp32, about P ulps
// of the largest partial sum, which for these random data is below a few times the total's scale.
// Measured: at most 2e-7 over every quantity at P = 2, 3, 4, so 1e-5 leaves a margin of 50x, while
// a missing rank's contribution (order 1) or a 1e-3 error in one backward sum fails.
constexpr double same_layer_tol = 1e-5;

// A normalisation case: logical shape of the UNION batch (N = B), channel block of the layout.
struct SyncCase {
  Shape union_shape;
  int block;
};

// 2D and 3D, plain (C = 3) and blocked (C = 16 in blocks of 16), B = 7 so that no P in 2..4
// divides it (P = 4: shares 2, 2, 2, 1).
const SyncCase sync_cases[] = {
    {Shape{7, 3, 5, 3}, 1},
    {Shape{7, 16, 5, 3}, 16},
    {Shape{7, 3, 3, 2, 4}, 1},
    {Shape{7, 16, 2, 3, 2}, 16},
};

// The world, with the cores shared out among its ranks: 4 ranks of 2 OpenMP threads each on 2 cores
// spend 5x longer waking threads than computing. The layer's sums do not depend on the thread count.
Communicator world() {
  const Communicator comm(::testing::mpi_world());
  omp_set_num_threads(std::max(1, omp_get_num_procs() / comm.size()));
  return comm;
}

Shape with_batch(Shape s, int64_t n) {
  s[0] = n;
  return s;
}

// Rows [share.begin, share.end) of a logical N, C, S vector: N is outermost, so a contiguous range.
Vec rows_of(const Vec& v, const Extents& d, const Share& share) {
  const auto row = static_cast<long>(d.C * d.S);
  return Vec(v.begin() + share.begin * row, v.begin() + share.end * row);
}

// v with rows [share.begin, share.end) replaced by `part`.
Vec with_rows(Vec v, const Extents& d, const Share& share, const Vec& part) {
  std::copy(part.begin(), part.end(), v.begin() + share.begin * static_cast<long>(d.C * d.S));
  return v;
}

// Train-mode batch norm in fp64, two-pass statistics over N and space.
Vec train_reference(const Vec& x, const Extents& d, const Vec& gamma, const Vec& beta) {
  Vec y(x.size());
  const double M = static_cast<double>(d.N * d.S);
  for (int64_t c = 0; c < d.C; ++c) {
    const auto k = static_cast<size_t>(c);
    double mean = 0, var = 0;
    for (int64_t n = 0; n < d.N; ++n)
      for (int64_t s = 0; s < d.S; ++s) mean += x[d.at(n, c, s)] / M;
    for (int64_t n = 0; n < d.N; ++n)
      for (int64_t s = 0; s < d.S; ++s) var += (x[d.at(n, c, s)] - mean) * (x[d.at(n, c, s)] - mean) / M;
    for (int64_t n = 0; n < d.N; ++n)
      for (int64_t s = 0; s < d.S; ++s)
        y[d.at(n, c, s)] = gamma[k] * (x[d.at(n, c, s)] - mean) / std::sqrt(var + eps) + beta[k];
  }
  return y;
}

// Input with per-channel offsets and scales, so that normalisation has something to remove.
Vec channel_input(const Extents& d, uint64_t stream) {
  Vec x = random_vec(static_cast<size_t>(d.N * d.C * d.S), stream);
  const Vec offset = random_vec(static_cast<size_t>(d.C), stream + 100, -3, 3);
  const Vec scale = random_vec(static_cast<size_t>(d.C), stream + 200, 0.5, 4);
  for (int64_t n = 0; n < d.N; ++n)
    for (int64_t c = 0; c < d.C; ++c)
      for (int64_t s = 0; s < d.S; ++s)
        x[d.at(n, c, s)] = offset[static_cast<size_t>(c)] + scale[static_cast<size_t>(c)] * x[d.at(n, c, s)];
  return x;
}

// A finalized BatchNorm "bn" with gamma in [0.5, 1.5] and beta in [-1, 1] from fixed streams, so
// that every rank and the single-process layer hold the same parameters.
struct BnFixture : NormFixture<BatchNorm> {
  explicit BnFixture(int64_t C) : NormFixture("bn", BatchNormConfig{C, eps, momentum, true}) {}
};

// The hook of synchronized batch norm: one double allreduce per call, as the trainer wires it.
void synchronize(BatchNorm& layer, const Communicator& comm) {
  layer.set_stats_allreduce([&comm](double* data, int count) { comm.allreduce_sum(data, count); });
}

// What one train step (forward, backward) of a layer leaves behind, in logical order.
struct StepResult {
  Vec y, dx, dgamma, dbeta, running_mean, running_var;
};

StepResult train_step(BnFixture& f, const Vec& x, const Vec& w, const Shape& shape, int block) {
  f.registry.zero_grads();
  StepResult r;
  r.y = values_of(f.layer.forward(tensor_from(x, shape, block), Mode::train));
  r.dx = values_of(f.layer.backward(tensor_from(w, shape, block)));
  r.dgamma = f.dgamma();
  r.dbeta = f.dbeta();
  r.running_mean = values_of(f.layer.running_mean());
  r.running_var = values_of(f.layer.running_var());
  return r;
}

// The union batch x and loss weights w (dL/dy), the same on every rank.
struct UnionBatch {
  Extents d;
  Vec x, w;
  UnionBatch(const Shape& shape, uint64_t stream)
      : d(shape), x(channel_input(d, stream)), w(random_vec(x.size(), stream + 1)) {}
};

// This rank's step of the synchronized layer on its share of the union batch u, against the single-
// process layer's step on the whole of u: y and dx (this rank's rows), dgamma and dbeta (summed over
// ranks in fp32, as the gradient reducer does), running mean and variance.
void check_against_single_process(const Communicator& comm, const SyncCase& cs, const UnionBatch& u) {
  const int64_t B = cs.union_shape[0];
  const Share share = share_of(B, comm.rank(), comm.size());
  CAPTURE(share.count());
  const Shape local_shape = with_batch(cs.union_shape, share.count());

  BnFixture single(u.d.C);
  const StepResult whole = train_step(single, u.x, u.w, cs.union_shape, cs.block);

  BnFixture synced(u.d.C);
  synchronize(synced.layer, comm);
  StepResult part =
      train_step(synced, rows_of(u.x, u.d, share), rows_of(u.w, u.d, share), local_shape, cs.block);
  comm.allreduce_sum(synced.registry.flat_grads().data<float>(), synced.registry.flat_grads().numel());
  part.dgamma = synced.dgamma();
  part.dbeta = synced.dbeta();

  const Vec y_rows = rows_of(whole.y, u.d, share), dx_rows = rows_of(whole.dx, u.d, share);
  // An empty share has nothing to compare (and rel_max_error of empty vectors is 0 anyway).
  CHECK(rel_max_error(part.y, y_rows) < same_layer_tol);
  CHECK(rel_max_error(part.dx, dx_rows) < same_layer_tol);
  CHECK(rel_max_error(part.dgamma, whole.dgamma) < same_layer_tol);
  CHECK(rel_max_error(part.dbeta, whole.dbeta) < same_layer_tol);
  CHECK(rel_max_error(part.running_mean, whole.running_mean) < same_layer_tol);
  CHECK(rel_max_error(part.running_var, whole.running_var) < same_layer_tol);
}

// Runs body(case, union batch) for every case, naming it in failure messages.
template <class F>
void for_each_sync_case(F&& body) {
  uint64_t stream = 1000;
  for (const SyncCase& cs : sync_cases) {
    CAPTURE(cs.union_shape.str());
    CAPTURE(cs.block);
    body(cs, UnionBatch(cs.union_shape, stream));
    stream += 10;
  }
}

}  // namespace

TEST_CASE(
    "synchronized batch norm on P ranks with uneven shares of B = 7 equals batch norm on the whole batch") {
  const Communicator comm = world();
  CAPTURE(comm.size());
  CAPTURE(comm.rank());
  for_each_sync_case(
      [&](const SyncCase& cs, const UnionBatch& u) { check_against_single_process(comm, cs, u); });
}

TEST_CASE("synchronized batch norm matches the fp64 union-batch reference and its central differences") {
  const Communicator comm = world();
  CAPTURE(comm.size());
  CAPTURE(comm.rank());
  for_each_sync_case([&](const SyncCase& cs, const UnionBatch& u) {
    const Share share = share_of(cs.union_shape[0], comm.rank(), comm.size());
    BnFixture f(u.d.C);
    synchronize(f.layer, comm);
    const Vec x = rows_of(u.x, u.d, share);
    const StepResult r =
        train_step(f, x, rows_of(u.w, u.d, share), with_batch(cs.union_shape, share.count()), cs.block);
    comm.allreduce_sum(f.registry.flat_grads().data<float>(), f.registry.flat_grads().numel());

    const auto reference = [&](const Vec& xu, const Vec& g, const Vec& b) {
      return train_reference(xu, u.d, g, b);
    };
    const Vec y_union = reference(u.x, f.gamma, f.beta);
    CHECK(rel_max_error(r.y, rows_of(y_union, u.d, share)) < f32_tol);
    // dx of this rank's rows: the derivative of the loss of ALL ranks, w . y over the union batch,
    // with the other ranks' inputs held fixed.
    if (!x.empty())
      check_gradient([&](const Vec& v) { return reference(with_rows(u.x, u.d, share, v), f.gamma, f.beta); },
                     x, u.w, r.dx, 3);
    check_gradient([&](const Vec& g) { return reference(u.x, g, f.beta); }, f.gamma, u.w, f.dgamma(), 4);
    check_gradient([&](const Vec& b) { return reference(u.x, f.gamma, b); }, f.beta, u.w, f.dbeta(), 5);
  });
}

TEST_CASE("without the hook, ranks normalise with their own statistics (the comparison can fail)") {
  const Communicator comm = world();
  if (comm.size() == 1)
    return testing::skip_reason("one rank's batch is the union batch (mpi_syncbn_np2-4 run it)");
  const SyncCase& cs = sync_cases[1];
  const UnionBatch u(cs.union_shape, 1000 + 10);
  const Share share = share_of(cs.union_shape[0], comm.rank(), comm.size());
  BnFixture single(u.d.C), local(u.d.C);
  const StepResult whole = train_step(single, u.x, u.w, cs.union_shape, cs.block);
  const StepResult part = train_step(local, rows_of(u.x, u.d, share), rows_of(u.w, u.d, share),
                                     with_batch(cs.union_shape, share.count()), cs.block);
  CHECK(rel_max_error(part.y, rows_of(whole.y, u.d, share)) > 1e-3);
  CHECK(rel_max_error(part.running_mean, whole.running_mean) > 1e-3);
}

TEST_CASE("a rank with no samples still takes part: B = P - 1 equals batch norm on the whole batch") {
  const Communicator comm = world();
  if (comm.size() == 1)
    return testing::skip_reason("one rank always holds the whole batch (mpi_syncbn_np2-4 run it)");
  CAPTURE(comm.size());
  CAPTURE(comm.rank());
  const int64_t B = comm.size() - 1;  // the last rank holds nothing
  uint64_t stream = 2000;
  for (const SyncCase& base : sync_cases) {
    const SyncCase cs{with_batch(base.union_shape, B), base.block};
    CAPTURE(cs.union_shape.str());
    CAPTURE(cs.block);
    check_against_single_process(comm, cs, UnionBatch(cs.union_shape, stream));
    stream += 10;
  }
}

TEST_CASE("two synchronized train steps keep the running statistics equal to the single-process ones") {
  const Communicator comm = world();
  CAPTURE(comm.size());
  for (const SyncCase& cs : {sync_cases[0], sync_cases[3]}) {
    CAPTURE(cs.union_shape.str());
    const Share share = share_of(cs.union_shape[0], comm.rank(), comm.size());
    const Extents d(cs.union_shape);
    BnFixture single(d.C), synced(d.C);
    synchronize(synced.layer, comm);
    for (uint64_t step : {3000, 3010}) {
      const UnionBatch u(cs.union_shape, step);
      train_step(single, u.x, u.w, cs.union_shape, cs.block);
      train_step(synced, rows_of(u.x, u.d, share), rows_of(u.w, u.d, share),
                 with_batch(cs.union_shape, share.count()), cs.block);
    }
    CHECK(rel_max_error(values_of(synced.layer.running_mean()), values_of(single.layer.running_mean())) <
          same_layer_tol);
    CHECK(rel_max_error(values_of(synced.layer.running_var()), values_of(single.layer.running_var())) <
          same_layer_tol);
  }
}

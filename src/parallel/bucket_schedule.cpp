// Bucket schedule and its cross-rank verification (see bucket_schedule.hpp).
#include "parallel/bucket_schedule.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "core/error.hpp"
#include "core/watchdog.hpp"

namespace pdegen {

namespace {

// FNV-1a: small, stable across compilers and platforms (std::hash is neither).
struct Fnv {
  uint64_t h = 1469598103934665603ULL;
  void bytes(const void* p, size_t n) {
    const auto* c = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ c[i]) * 1099511628211ULL;
  }
  void value(int64_t v) { bytes(&v, sizeof v); }
};

std::string describe_param(const Parameter& p) { return fmt::format("{} {}", p.name, p.shape.str()); }

}  // namespace

std::string BucketSchedule::describe() const {
  std::string s = fmt::format("{} bucket{} of", buckets.size(), buckets.size() == 1 ? "" : "s");
  for (const Bucket& b : buckets)
    s += fmt::format(" {:.2f}", static_cast<double>(b.count()) * 4.0 / (1024.0 * 1024.0));
  return s + fmt::format(" MiB (schedule hash {:016x})", hash);
}

BucketSchedule make_bucket_schedule(const ParameterRegistry& params, double bucket_mb,
                                    double first_bucket_mb) {
  PDEGEN_CHECK(params.finalized(), "the bucket schedule needs a finalized parameter registry");
  PDEGEN_CHECK(bucket_mb > 0 && first_bucket_mb > 0, "bucket sizes must be positive ({} and {} MiB)",
               bucket_mb, first_bucket_mb);
  BucketSchedule s;
  const auto order = params.backward_order();
  s.bucket_of.assign(params.params().size(), -1);
  const int64_t total = params.flat_grads().numel();
  auto limit_elems = [&](size_t bucket) {
    const double mb = bucket == 0 ? first_bucket_mb : bucket_mb;
    return std::max<int64_t>(1, static_cast<int64_t>(mb * 1024.0 * 1024.0 / 4.0));
  };
  for (size_t k = 0; k < order.size(); ++k) {
    const Parameter& p = params.param(order[k]);
    // The parameter's extent includes the padding up to the next one.
    const int64_t end = k + 1 < order.size() ? params.param(order[k + 1]).offset : total;
    if (s.buckets.empty() || s.buckets.back().count() >= limit_elems(s.buckets.size() - 1))
      s.buckets.push_back(Bucket{p.offset, p.offset, {}});
    Bucket& b = s.buckets.back();
    PDEGEN_CHECK(b.end == p.offset,
                 "parameter {} at offset {} is not contiguous with its bucket (ends at {})", p.name, p.offset,
                 b.end);
    b.end = end;
    b.params.push_back(order[k]);
    s.bucket_of[static_cast<size_t>(order[k])] = static_cast<int>(s.buckets.size() - 1);
  }
  Fnv all;
  for (ParameterRegistry::Id id : order) {
    const Parameter& p = params.param(id);
    Fnv h;
    h.bytes(p.name.data(), p.name.size());
    for (int i = 0; i < p.shape.rank(); ++i) h.value(p.shape[i]);
    h.value(p.offset);
    h.value(s.bucket_of[static_cast<size_t>(id)]);
    s.param_hashes.push_back(h.h);
    all.value(static_cast<int64_t>(h.h));
  }
  s.hash = all.h;
  return s;
}

void verify_schedule(const BucketSchedule& schedule, const ParameterRegistry& params,
                     const Communicator& comm) {
  if (comm.size() == 1) return;
  // Hashes travel as [h, ~h] under MAX: equal everywhere iff max(h) == min(h).
  const int64_t n = static_cast<int64_t>(schedule.param_hashes.size());
  int64_t counts[2] = {n, -n};
  const watchdog::Wait wait("the bucket schedule check (MPI_Allreduce)");
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, counts, 2, MPI_INT64_T, MPI_MAX, comm.comm()));
  const int64_t common = -counts[1];  // the smallest count: every rank compares that many
  std::vector<uint64_t> h(static_cast<size_t>(2 * common));
  for (int64_t i = 0; i < common; ++i) {
    h[static_cast<size_t>(2 * i)] = schedule.param_hashes[static_cast<size_t>(i)];
    h[static_cast<size_t>(2 * i + 1)] = ~schedule.param_hashes[static_cast<size_t>(i)];
  }
  if (common > 0)
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, h.data(), static_cast<int>(h.size()), MPI_UINT64_T, MPI_MAX,
                            comm.comm()));
  const auto order = params.backward_order();
  for (int64_t i = 0; i < common; ++i) {
    if (h[static_cast<size_t>(2 * i)] != ~h[static_cast<size_t>(2 * i + 1)]) {
      const Parameter& p = params.param(order[static_cast<size_t>(i)]);
      PDEGEN_THROW(
          "the ranks' gradient-reduction schedules differ: first at parameter {} of {} in backward order, "
          "which is {} in bucket {} on rank {} (the ranks built different networks: same deck and binary "
          "everywhere?)",
          i, n, describe_param(p), schedule.bucket_of[static_cast<size_t>(order[static_cast<size_t>(i)])],
          comm.rank());
    }
  }
  if (counts[0] != common)
    PDEGEN_THROW(
        "the ranks' gradient-reduction schedules differ: ranks have between {} and {} parameters (this rank "
        "{}); the first {} agree",
        common, counts[0], n, common);
}

}  // namespace pdegen

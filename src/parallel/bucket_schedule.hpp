// The static reduction schedule: the flat gradient buffer (backward order, core/parameter.hpp) cut
// into contiguous buckets that never split a parameter. It is a pure function of the registry and
// the two sizes, so every rank computes the same schedule with no negotiation; verify_schedule()
// proves it at setup with two small allreduces, and names the first parameter where ranks differ.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/parameter.hpp"
#include "parallel/communicator.hpp"

namespace pdegen {

struct Bucket {
  int64_t begin = 0, end = 0;                 // element range [begin, end) of the flat gradient buffer
  std::vector<ParameterRegistry::Id> params;  // in backward order
  int64_t count() const { return end - begin; }
};

struct BucketSchedule {
  std::vector<Bucket> buckets;         // in launch order (= backward order)
  std::vector<int> bucket_of;          // parameter id -> bucket index
  std::vector<uint64_t> param_hashes;  // per parameter in backward order: name, shape, bucket
  uint64_t hash = 0;                   // of the whole schedule
  std::string describe() const;        // one line for the log
};

// Buckets of about `bucket_mb` MiB of fp32 gradients, the first one `first_bucket_mb` (so that the
// first reduction starts early in backward). A parameter larger than the limit gets a bucket of its
// own. Alignment padding between parameters belongs to the bucket of the parameter before it.
BucketSchedule make_bucket_schedule(const ParameterRegistry& params, double bucket_mb,
                                    double first_bucket_mb);

// Compares the schedules of all ranks; on a mismatch every rank throws the same Error, naming the
// first differing parameter (or the differing parameter count). Never hangs: the collectives it
// uses have the same counts on every rank whatever the schedules are.
void verify_schedule(const BucketSchedule& schedule, const ParameterRegistry& params,
                     const Communicator& comm);

}  // namespace pdegen

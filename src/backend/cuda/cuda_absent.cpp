// The device functions every build has (see cuda_context.hpp), in a binary built without CUDA: they
// say so, and never pretend to have a GPU.
#ifndef PDEGEN_HAVE_CUDA

#include "backend/cuda/cuda_context.hpp"
#include "core/error.hpp"

namespace pdegen::cuda {

namespace {
constexpr const char* not_built = "built without CUDA (configure with the 'cuda' preset or -DPDEGEN_CUDA=ON)";
}

bool available(std::string* reason) {
  if (reason) *reason = not_built;
  return false;
}

void select_device(int /*node_local_rank*/) {
  PDEGEN_THROW("cannot select a GPU: this pdegen was {}", not_built);
}

std::string describe_device() { PDEGEN_THROW("no GPU to describe: this pdegen was {}", not_built); }

std::string compiled_versions() { return "not built in this binary"; }

void synchronize() {}

AllocatorStats memory_stats() { return {}; }
void reset_memory_peak() {}

}  // namespace pdegen::cuda

#endif  // PDEGEN_HAVE_CUDA

// Per-parameter work items over the flat buffers (see parameter_chunks.hpp).
#include "optim/parameter_chunks.hpp"

#include <algorithm>

namespace pdegen {

ParameterChunks::ParameterChunks(const ParameterRegistry& params) {
  PDEGEN_CHECK(params.finalized(), "parameter chunks of a registry that is not finalized");
  const int count = static_cast<int>(params.params().size());
  for (int p = 0; p < count; ++p) {
    const Parameter& param = params.param(p);
    const int64_t numel = param.shape.numel();
    params_.push_back({param.offset, numel});
    for (int64_t b = 0; b < numel; b += chunk_elements)
      chunks_.push_back({p, param.offset + b, param.offset + std::min(numel, b + chunk_elements)});
  }
}

}  // namespace pdegen

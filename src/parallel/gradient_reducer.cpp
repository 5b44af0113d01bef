// gradient_reducer.hpp: the reducer that fits where the gradient buffer lives, and the hierarchical
// form's communicators both reducers use.
#include "parallel/gradient_reducer.hpp"

#include <fmt/format.h>

#include "core/error.hpp"
#include "parallel/mpi_reducer.hpp"
#include "parallel/nccl_reducer.hpp"

namespace pdegen {

ReductionGroups reduction_groups(const Communicator& comm, const ParallelConfig& options) {
  ReductionGroups groups;
  const int P = comm.size();
  if (P == 1 || options.hierarchical == Hierarchical::off) return groups;
  groups.node = comm.node_local();
  double sizes[2] = {static_cast<double>(groups.node.size()), -static_cast<double>(groups.node.size())};
  comm.allreduce_max(sizes, 2);
  const bool uniform = sizes[0] == -sizes[1];
  if (options.hierarchical == Hierarchical::on && !uniform)
    throw UserError(
        fmt::format("parallel.hierarchical: on needs the same number of ranks on every node (found {} to "
                    "{}); use auto or off",
                    -sizes[1], sizes[0]));
  groups.hierarchical = options.hierarchical == Hierarchical::on ||
                        (uniform && groups.node.size() > 1 && groups.node.size() < P);
  if (groups.hierarchical) groups.cross = comm.split(groups.node.rank(), comm.rank());
  return groups;
}

std::unique_ptr<GradientReducer> make_reducer(ParameterRegistry& params, const Communicator& comm,
                                              const ParallelConfig& options, Timeline* timeline) {
  const Device device = params.flat_grads().device();
  if (device == Device::cpu) return std::make_unique<MpiReducer>(params, comm, options, timeline);
#ifdef PDEGEN_HAVE_CUDA
  return std::make_unique<NcclReducer>(params, comm, options, timeline);
#else
  PDEGEN_THROW("the gradient buffer is on {}, but this pdegen was built without the CUDA backend",
               device_name(device));
#endif
}

}  // namespace pdegen

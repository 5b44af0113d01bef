// make_reducer (reducer.hpp): the reducer that fits where the gradient buffer lives.
#include "core/error.hpp"
#include "parallel/nccl_reducer.hpp"
#include "parallel/reducer.hpp"

namespace pdegen {

std::unique_ptr<GradientReducer> make_reducer(ParameterRegistry& params, const Communicator& comm,
                                              const ParallelConfig& options, Timeline* timeline) {
  const Device device = params.flat_grads().device();
  if (device == Device::cpu) return std::make_unique<Reducer>(params, comm, options, timeline);
#ifdef PDEGEN_HAVE_CUDA
  return std::make_unique<NcclReducer>(params, comm, options, timeline);
#else
  PDEGEN_THROW("the gradient buffer is on {}, but this pdegen was built without the CUDA backend",
               device_name(device));
#endif
}

}  // namespace pdegen

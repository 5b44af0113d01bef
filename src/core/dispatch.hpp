// PDEGEN_DISPATCH: a call on the tensor's device, for every module that has a CPU and a CUDA
// implementation (layers, the boundary lift, tensors).
#pragma once

#include "core/error.hpp"
#include "core/tensor.hpp"

// Dispatch to a backend's implementation; a binary without CUDA says so instead of falling back.
#if defined(PDEGEN_HAVE_CUDA)
#define PDEGEN_DISPATCH(device, cpu_call, cuda_call) \
  ((device) == ::pdegen::Device::cpu ? (cpu_call) : (cuda_call))
#else
#define PDEGEN_DISPATCH(device, cpu_call, cuda_call)                                               \
  ((device) == ::pdegen::Device::cpu                                                               \
       ? (cpu_call)                                                                                \
       : (PDEGEN_THROW("{} requested on device 'cuda' but this pdegen was built without the CUDA " \
                       "backend (configure with the 'cuda' preset)",                               \
                       __func__),                                                                  \
          (cpu_call)))
#endif

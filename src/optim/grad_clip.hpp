// Gradient clipping by the global L2 norm (PyTorch's clip_grad_norm_), over the flat gradient buffer.
#pragma once

#include "core/parameter.hpp"
#include "core/tensor.hpp"

namespace pdegen {

// sqrt(sum g_i^2) over a flat fp32 tensor, accumulated in double in fixed chunks summed in a fixed
// order: the same bits for any number of threads, so every rank clips by the same factor.
double global_norm(const Tensor& flat);

// Returns the gradient norm before clipping. With max_norm > 0, scales every gradient by
// max_norm / (norm + 1e-6) when that is below 1, as PyTorch does; max_norm = 0 only measures.
double clip_grad_norm(ParameterRegistry& params, double max_norm);

}  // namespace pdegen

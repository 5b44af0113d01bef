// Conv on the GPU: the shared cuDNN passes of nn/conv_family_cuda.cu (cuDNN's convolution forward,
// its backward-data adjoint for dx, backward-filter and backward-bias for the parameters).
#include "nn/conv.hpp"

namespace pdegen {

Tensor Conv::forward_cuda(const Tensor& x, Mode mode) { return forward_cudnn(x, mode); }

Tensor Conv::backward_cuda(const Tensor& dy) { return backward_cudnn(dy); }

}  // namespace pdegen

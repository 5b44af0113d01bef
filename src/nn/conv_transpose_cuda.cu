// ConvTranspose on the GPU: the shared cuDNN passes of nn/conv_family_cuda.cu with the roles swapped
// (forward is cuDNN's backward-data, dx its convolution forward); PyTorch's [Cin, Cout, k...] weight
// order is already cuDNN's filter layout for that convolution.
#include "nn/conv_transpose.hpp"

namespace pdegen {

Tensor ConvTranspose::forward_cuda(const Tensor& x, Mode mode) { return forward_cudnn(x, mode); }

Tensor ConvTranspose::backward_cuda(const Tensor& dy) { return backward_cudnn(dy); }

}  // namespace pdegen

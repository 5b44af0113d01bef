// Upsample: checks, output shape, FLOP count and backend dispatch.
#include "nn/upsample.hpp"

namespace pdegen {

Upsample::Upsample(int ndim) : ndim_(ndim) {
  PDEGEN_CHECK(ndim == 2 || ndim == 3, "nearest up-sampling over {} spatial dims (expected 2 or 3)", ndim);
}

Shape Upsample::output_shape(const Shape& in) const {
  PDEGEN_CHECK(in.rank() == ndim_ + 2, "{}D up-sampling expects N, C and {} spatial extents, got {}", ndim_,
               ndim_, in.str());
  Shape out = in;
  for (int i = 2; i < in.rank(); ++i) out[i] = 2 * in[i];
  return out;
}

Flops Upsample::flops(const Shape& in) const { return {0, static_cast<double>(output_shape(in).numel()), 0}; }

Tensor Upsample::forward(const Tensor& x, Mode) {
  // fp16/bf16 activations are storage types, summed in fp32 in backward.
  PDEGEN_CHECK(is_storage_type(x.dtype()), "upsample_nearest takes fp32, fp16 or bf16 activations, got {}",
               x.describe());
  output_shape(x.shape());  // checks the rank
  Tensor y = PDEGEN_DISPATCH(x.device(), forward_cpu(x), forward_cuda(x));
  in_dtype_ = x.dtype();
  return y;
}

Tensor Upsample::backward(const Tensor& dy) {
  PDEGEN_CHECK(has_forward_, "upsample_nearest backward before forward");
  PDEGEN_CHECK(dy.shape() == output_shape(in_shape_) && dy.dtype() == in_dtype_,
               "upsample_nearest backward got {}, expected {} of the output shape {}", dy.describe(),
               dtype_name(in_dtype_), output_shape(in_shape_).str());
  return PDEGEN_DISPATCH(dy.device(), backward_cpu(dy), backward_cuda(dy));
}

}  // namespace pdegen

// Pool: configuration checks, output shape, FLOP count and backend dispatch.
#include "nn/pool.hpp"

namespace pdegen {

Pool::Pool(Algorithm algorithm, const PoolConfig& config) : algorithm_(algorithm), config_(config) {
  PDEGEN_CHECK(config_.ndim == 2 || config_.ndim == 3, "pooling over {} spatial dims (expected 2 or 3)",
               config_.ndim);
  PDEGEN_CHECK(config_.kernel >= 1 && config_.stride >= 0, "pooling kernel {} stride {}", config_.kernel,
               config_.stride);
  PDEGEN_CHECK(config_.padding >= 0 && 2 * config_.padding <= config_.kernel,
               "pooling padding {} must be in [0, kernel / 2] (kernel {})", config_.padding, config_.kernel);
}

Shape Pool::output_shape(const Shape& in) const {
  PDEGEN_CHECK(in.rank() == config_.ndim + 2, "{}D pooling expects N, C and {} spatial extents, got {}",
               config_.ndim, config_.ndim, in.str());
  Shape out = in;
  for (int i = 2; i < in.rank(); ++i) {
    const int64_t padded = in[i] + 2 * config_.padding;
    PDEGEN_CHECK(padded >= config_.kernel, "pooling kernel {} larger than padded extent {} of {}",
                 config_.kernel, padded, in.str());
    out[i] = (padded - config_.kernel) / config_.effective_stride() + 1;
  }
  return out;
}

Flops Pool::flops(const Shape& in) const {
  double window = 1;
  for (int i = 0; i < config_.ndim; ++i) window *= config_.kernel;
  const double n = window * static_cast<double>(output_shape(in).numel());
  return {n, n, 0};
}

Tensor Pool::forward(const Tensor& x, Mode) {
  // fp16/bf16 activations are storage types (computed in fp32); oneDNN 2.6 pools no fp16 on the CPU.
  PDEGEN_CHECK(is_storage_type(x.dtype()) && (x.device() == Device::cuda || x.dtype() != DType::f16),
               "{} takes fp32 or bf16 activations (fp16 only on the GPU), got {}", kind(), x.describe());
  output_shape(x.shape());  // checks rank and extents
  Tensor y = PDEGEN_DISPATCH(x.device(), forward_cpu(x), forward_cuda(x));
  in_dtype_ = x.dtype();
  return y;
}

Tensor Pool::backward(const Tensor& dy) {
  PDEGEN_CHECK(has_forward_, "{} backward before forward", kind());
  PDEGEN_CHECK(dy.shape() == output_shape(in_shape_) && dy.dtype() == in_dtype_,
               "{} backward got {}, expected {} of the output shape {}", kind(), dy.describe(),
               dtype_name(in_dtype_), output_shape(in_shape_).str());
  return PDEGEN_DISPATCH(dy.device(), backward_cpu(dy), backward_cuda(dy));
}

}  // namespace pdegen

// ConvTranspose: configuration checks, parameter registration, shapes, FLOP count and backend
// dispatch.
#include "nn/conv_transpose.hpp"

#include <cmath>
#include <utility>

namespace pdegen {

ConvTranspose::ConvTranspose(std::string name, const ConvTransposeConfig& config, ParameterRegistry& registry)
    : name_(std::move(name)), config_(config), registry_(&registry) {
  PDEGEN_CHECK(config.ndim == 2 || config.ndim == 3, "conv_transpose '{}': ndim {} (expected 2 or 3)", name_,
               config.ndim);
  PDEGEN_CHECK(config.in_channels > 0 && config.out_channels > 0, "conv_transpose '{}': channels {} -> {}",
               name_, config.in_channels, config.out_channels);
  PDEGEN_CHECK(config.kernel >= 1 && config.stride >= 1 && config.padding >= 0,
               "conv_transpose '{}': kernel {}, stride {}, padding {}", name_, config.kernel, config.stride,
               config.padding);
  // PyTorch takes fan_in from weight dim 1, which for a transposed convolution is Cout.
  const double fan_in = static_cast<double>(config.out_channels) * std::pow(config.kernel, config.ndim);
  const double bound = 1.0 / std::sqrt(fan_in);
  weight_id_ = registry.add(name_ + ".weight", weight_shape(), ParamInit::uniform(bound));
  if (config.bias)
    bias_id_ = registry.add(name_ + ".bias", Shape{config.out_channels}, ParamInit::uniform(bound));
}

Shape ConvTranspose::weight_shape() const {
  Shape s{config_.in_channels, config_.out_channels};
  for (int d = 0; d < config_.ndim; ++d) s.push_back(config_.kernel);
  return s;
}

Shape ConvTranspose::output_shape(const Shape& in) const {
  PDEGEN_CHECK(in.rank() == config_.ndim + 2, "conv_transpose '{}' ({}D) got input shape {}", name_,
               config_.ndim, in.str());
  Shape out{in[0], config_.out_channels};
  for (int d = 2; d < in.rank(); ++d) {
    const int64_t extent = (in[d] - 1) * config_.stride - 2 * config_.padding + config_.kernel;
    PDEGEN_CHECK(in[d] >= 1 && extent >= 1,
                 "conv_transpose '{}': input extent {} on axis {} gives output extent {} (kernel {}, stride "
                 "{}, padding {})",
                 name_, in[d], d, extent, config_.kernel, config_.stride, config_.padding);
    out.push_back(extent);
  }
  return out;
}

Flops ConvTranspose::flops(const Shape& in) const {
  output_shape(in);  // checks the shape
  const double macs = static_cast<double>(in[0]) * static_cast<double>(in.spatial()) *
                      static_cast<double>(config_.in_channels) * static_cast<double>(config_.out_channels) *
                      std::pow(config_.kernel, config_.ndim);
  return {2 * macs, 2 * macs, 2 * macs};
}

void ConvTranspose::check_input(const Tensor& x) const {
  PDEGEN_CHECK(x.dtype() == DType::f32, "conv_transpose '{}' computes in f32, got {}", name_, x.describe());
  PDEGEN_CHECK(x.rank() == config_.ndim + 2 && x.dim(1) == config_.in_channels,
               "conv_transpose '{}' expects [N, {}, {}] input, got {}", name_, config_.in_channels,
               config_.ndim == 2 ? "H, W" : "D, H, W", x.describe());
  output_shape(x.shape());  // checks the spatial extents
}

Tensor ConvTranspose::forward(const Tensor& x, Mode mode) {
  check_input(x);
  return PDEGEN_DISPATCH(x.device(), forward_cpu(x, mode), forward_cuda(x, mode));
}

Tensor ConvTranspose::backward(const Tensor& dy) {
  PDEGEN_CHECK(x_.defined(),
               "conv_transpose '{}': backward without a train-mode forward (eval mode keeps no input)",
               name_);
  PDEGEN_CHECK(dy.shape() == output_shape(x_.shape()) && dy.dtype() == DType::f32,
               "conv_transpose '{}': backward got dy {}, forward produced {}", name_, dy.describe(),
               output_shape(x_.shape()).str());
  return PDEGEN_DISPATCH(dy.device(), backward_cpu(dy), backward_cuda(dy));
}

}  // namespace pdegen

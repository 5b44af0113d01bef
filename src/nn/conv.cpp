// Conv: configuration checks, parameter registration, shapes, FLOP count and backend dispatch.
#include "nn/conv.hpp"

#include <cmath>
#include <utility>

namespace pdegen {

ConvConfig ConvConfig::pointwise(int64_t cin, int64_t cout, int ndim) {
  ConvConfig c;
  c.ndim = ndim;
  c.in_channels = cin;
  c.out_channels = cout;
  c.kernel = 1;
  c.stride = 1;
  c.padding = 0;
  c.bias = true;
  return c;
}

Conv::Conv(std::string name, const ConvConfig& config, ParameterRegistry& registry)
    : name_(std::move(name)), config_(config), registry_(&registry) {
  PDEGEN_CHECK(config.ndim == 2 || config.ndim == 3, "conv '{}': ndim {} (expected 2 or 3)", name_,
               config.ndim);
  PDEGEN_CHECK(config.in_channels > 0 && config.out_channels > 0, "conv '{}': channels {} -> {}", name_,
               config.in_channels, config.out_channels);
  PDEGEN_CHECK(config.kernel >= 1 && config.stride >= 1 && config.padding >= 0,
               "conv '{}': kernel {}, stride {}, padding {}", name_, config.kernel, config.stride,
               config.padding);
  // PyTorch's default (kaiming_uniform with a = sqrt(5) reduces to this bound for the weight too).
  const double fan_in = static_cast<double>(config.in_channels) * std::pow(config.kernel, config.ndim);
  const double bound = 1.0 / std::sqrt(fan_in);
  weight_id_ = registry.add(name_ + ".weight", weight_shape(), ParamInit::uniform(bound));
  if (config.bias)
    bias_id_ = registry.add(name_ + ".bias", Shape{config.out_channels}, ParamInit::uniform(bound));
}

Shape Conv::weight_shape() const {
  Shape s{config_.out_channels, config_.in_channels};
  for (int d = 0; d < config_.ndim; ++d) s.push_back(config_.kernel);
  return s;
}

Shape Conv::output_shape(const Shape& in) const {
  PDEGEN_CHECK(in.rank() == config_.ndim + 2, "conv '{}' ({}D) got input shape {}", name_, config_.ndim,
               in.str());
  Shape out{in[0], config_.out_channels};
  for (int d = 2; d < in.rank(); ++d) {
    const int64_t span = in[d] + 2 * config_.padding - config_.kernel;
    PDEGEN_CHECK(span >= 0, "conv '{}': input extent {} on axis {} is smaller than kernel {} - 2*padding {}",
                 name_, in[d], d, config_.kernel, config_.padding);
    out.push_back(span / config_.stride + 1);
  }
  return out;
}

Flops Conv::flops(const Shape& in) const {
  const Shape out = output_shape(in);
  const double macs = static_cast<double>(out.numel()) * static_cast<double>(config_.in_channels) *
                      std::pow(config_.kernel, config_.ndim);
  return {2 * macs, 2 * macs, 2 * macs};
}

void Conv::check_input(const Tensor& x) const {
  PDEGEN_CHECK(x.dtype() == DType::f32, "conv '{}' computes in f32, got {}", name_, x.describe());
  PDEGEN_CHECK(x.rank() == config_.ndim + 2 && x.dim(1) == config_.in_channels,
               "conv '{}' expects [N, {}, {}] input, got {}", name_, config_.in_channels,
               config_.ndim == 2 ? "H, W" : "D, H, W", x.describe());
  output_shape(x.shape());  // checks the spatial extents
}

Tensor Conv::forward(const Tensor& x, Mode mode) {
  check_input(x);
  return PDEGEN_DISPATCH(x.device(), forward_cpu(x, mode), forward_cuda(x, mode));
}

Tensor Conv::backward(const Tensor& dy) {
  PDEGEN_CHECK(x_.defined(), "conv '{}': backward without a train-mode forward (eval mode keeps no input)",
               name_);
  PDEGEN_CHECK(dy.shape() == output_shape(x_.shape()) && dy.dtype() == DType::f32,
               "conv '{}': backward got dy {}, forward produced {}", name_, dy.describe(),
               output_shape(x_.shape()).str());
  return PDEGEN_DISPATCH(dy.device(), backward_cpu(dy), backward_cuda(dy));
}

}  // namespace pdegen

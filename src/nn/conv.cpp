// Conv: configuration, shapes, FLOP count and backend dispatch.
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
    : ConvFamilyLayer("conv", std::move(name), ConvGeometry::of(config), false, registry), config_(config) {}

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

Tensor Conv::forward_checked(const Tensor& x, Mode mode) {
  return PDEGEN_DISPATCH(x.device(), forward_cpu(x, mode), forward_cuda(x, mode));
}

Tensor Conv::backward_checked(const Tensor& dy) {
  return PDEGEN_DISPATCH(dy.device(), backward_cpu(dy), backward_cuda(dy));
}

}  // namespace pdegen

// ConvTranspose: configuration, shapes, FLOP count and backend dispatch.
#include "nn/conv_transpose.hpp"

#include <cmath>
#include <utility>

namespace pdegen {

ConvTranspose::ConvTranspose(std::string name, const ConvTransposeConfig& config, ParameterRegistry& registry)
    : ConvFamilyLayer("conv_transpose", std::move(name), ConvGeometry::of(config), true, registry),
      config_(config) {}

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

Tensor ConvTranspose::forward_checked(const Tensor& x, Mode mode) {
  return PDEGEN_DISPATCH(x.device(), forward_cpu(x, mode), forward_cuda(x, mode));
}

Tensor ConvTranspose::backward_checked(const Tensor& dy) {
  return PDEGEN_DISPATCH(dy.device(), backward_cpu(dy), backward_cuda(dy));
}

}  // namespace pdegen

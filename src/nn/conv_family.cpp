// ConvFamilyLayer: geometry checks, parameter registration and the checks around the backend passes.
#include "nn/conv_family.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

#include "backend/cpu/dnnl_context.hpp"

namespace pdegen {

ConvFamilyLayer::ConvFamilyLayer(std::string_view kind, std::string name, const ConvGeometry& geometry,
                                 bool transposed, ParameterRegistry& registry)
    : kind_(kind),
      name_(std::move(name)),
      geometry_(geometry),
      transposed_(transposed),
      registry_(&registry) {
  const ConvGeometry& g = geometry_;
  PDEGEN_CHECK(g.ndim == 2 || g.ndim == 3, "{} '{}': ndim {} (expected 2 or 3)", kind_, name_, g.ndim);
  PDEGEN_CHECK(g.in_channels > 0 && g.out_channels > 0, "{} '{}': channels {} -> {}", kind_, name_,
               g.in_channels, g.out_channels);
  PDEGEN_CHECK(g.kernel >= 1 && g.stride >= 1 && g.padding >= 0, "{} '{}': kernel {}, stride {}, padding {}",
               kind_, name_, g.kernel, g.stride, g.padding);
  // PyTorch's default (kaiming_uniform with a = sqrt(5) reduces to this bound for the weight too).
  const Shape w = weight_shape();
  const double fan_in = static_cast<double>(w[1]) * std::pow(g.kernel, g.ndim);
  const double bound = 1.0 / std::sqrt(fan_in);
  weight_id_ = registry.add(name_ + ".weight", w, ParamInit::uniform(bound));
  if (g.bias) bias_id_ = registry.add(name_ + ".bias", Shape{g.out_channels}, ParamInit::uniform(bound));
}

Shape ConvFamilyLayer::weight_shape() const {
  const ConvGeometry& g = geometry_;
  Shape s = transposed_ ? Shape{g.in_channels, g.out_channels} : Shape{g.out_channels, g.in_channels};
  for (int d = 0; d < g.ndim; ++d) s.push_back(g.kernel);
  return s;
}

Tensor ConvFamilyLayer::forward(const Tensor& x, Mode mode) {
  const ConvGeometry& g = geometry_;
  // fp32 everywhere; bf16 activations (mixed precision) on either device, fp16 on the GPU only
  // (oneDNN 2.6 has no fp16 convolutions on the CPU).
  const bool reduced = x.dtype() == DType::bf16 || (x.device() == Device::cuda && x.dtype() == DType::f16);
  PDEGEN_CHECK(x.dtype() == DType::f32 || reduced,
               "{} '{}' takes fp32 or bf16 input (fp16 on the GPU), got {}", kind_, name_, x.describe());
  PDEGEN_CHECK(x.rank() == g.ndim + 2 && x.dim(1) == g.in_channels,
               "{} '{}' expects [N, {}, {}] input, got {}", kind_, name_, g.in_channels,
               g.ndim == 2 ? "H, W" : "D, H, W", x.describe());
  output_shape(x.shape());  // checks the spatial extents
  in_dtype_ = x.dtype();
  in_block_ = x.channel_block();
  widened_ = x.device() == Device::cpu && x.dtype() == DType::bf16 &&
             std::max(x.dim(-1), output_shape(x.shape())[-1]) > cpu::widest_bf16_image;
  if (!widened_) return forward_checked(x, mode);
  const Tensor y = forward_checked(cpu::widened_to_fp32(x), mode);
  return cpu::narrowed_to(y, DType::bf16, cpu::activation_block(y.dim(1), DType::bf16));
}

Tensor ConvFamilyLayer::backward(const Tensor& dy) {
  PDEGEN_CHECK(x_.defined(), "{} '{}': backward without a train-mode forward (eval mode keeps no input)",
               kind_, name_);
  // dy in the forward's element type: cuDNN's backward passes take one data type for x and dy.
  PDEGEN_CHECK(dy.shape() == output_shape(x_.shape()) && dy.dtype() == in_dtype_,
               "{} '{}': backward got dy {}, forward produced {} {}", kind_, name_, dy.describe(),
               output_shape(x_.shape()).str(), dtype_name(in_dtype_));
  if (!widened_) return backward_checked(dy);
  const Tensor dx = backward_checked(cpu::widened_to_fp32(dy));
  return dx.defined() ? cpu::narrowed_to(dx, DType::bf16, in_block_) : dx;
}

#ifndef PDEGEN_HAVE_CUDA
// Without the CUDA backend no plan is ever made (PDEGEN_DISPATCH refuses device tensors first).
void ConvFamilyLayer::CudaPlanDeleter::operator()(CudaPlan* /*plan*/) const {}
#endif

}  // namespace pdegen

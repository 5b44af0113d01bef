// Conv on the CPU: oneDNN convolution primitives (nn/conv_family_cpu.hpp), built once per input shape
// and cached in the layer. The bias is the primitives' own: oneDNN adds it in the forward kernel and
// computes its gradient with the weights'.
#include <algorithm>
#include <dnnl.hpp>

#include "nn/conv.hpp"
#include "nn/conv_family_cpu.hpp"

namespace pdegen {

using ConvPrimitives = ConvFamilyPlan<dnnl::convolution_forward, dnnl::convolution_backward_data,
                                      dnnl::convolution_backward_weights>;

struct Conv::CpuPlan : ConvPrimitives {
  using ConvPrimitives::ConvPrimitives;
  Tensor diff_bias;  // [Cout], what backward-weights writes, then added into the registry's gradient
};

void Conv::CpuPlanDeleter::operator()(CpuPlan* plan) const { delete plan; }

Tensor Conv::forward_cpu(const Tensor& x, Mode mode) {
  if (!cpu_plan_ || !cpu_plan_->runs(x)) {
    int64_t smallest = x.dim(2);
    for (int d = 3; d < x.rank(); ++d) smallest = std::min(smallest, x.dim(d));
    const bool winograd =
        cpu::runs_winograd(geometry_.ndim, geometry_.kernel, geometry_.stride, geometry_.in_channels,
                           geometry_.out_channels, smallest, x.dtype());
    cpu_plan_.reset(
        new CpuPlan(winograd ? dnnl::algorithm::convolution_winograd : dnnl::algorithm::convolution_direct,
                    geometry_, x.shape(), output_shape(x.shape()), x.dtype(), cpu::plain_desc(weight_shape()),
                    config_.bias, fmt::format("conv '{}'", name_)));
    if (config_.bias) cpu_plan_->diff_bias = Tensor::empty(Shape{config_.out_channels});
  }
  Tensor y = cpu_plan_->forward(x, registry_->value(weight_id_),
                                config_.bias ? registry_->value(bias_id_) : Tensor());
  // The caller's tensor, not a re-laid-out copy: it is usually alive anyway (the previous layer's
  // output), so keeping it costs no memory; backward redoes the reorder if one was needed.
  x_ = mode == Mode::train ? x : Tensor();
  return y;
}

Tensor Conv::backward_cpu(const Tensor& dy) {
  CpuPlan& p = *cpu_plan_;
  cpu::DnnlBuffer dy_scratch;
  // Parameter gradients first, so the reducer can ship them while dx is computed.
  const dnnl::memory diff_dst =
      p.backward_weights(x_, dy, dy_scratch, registry_->grad(weight_id_), p.diff_bias);
  registry_->grad_ready(weight_id_);
  if (config_.bias) {
    float* db = registry_->grad(bias_id_).data<float>();
    const float* g = p.diff_bias.data<float>();
    for (int64_t o = 0; o < config_.out_channels; ++o) db[o] += g[o];
    registry_->grad_ready(bias_id_);
  }
  // dW was the input's last reader: dropping it here lets dx reuse its memory (the caching
  // allocator hands back a block of the same size), which matters for a concat's output.
  const int x_block = x_.channel_block();
  if (frees_input_in_backward_) x_ = Tensor();
  return needs_input_grad_ ? p.backward_data(diff_dst, registry_->value(weight_id_), x_block) : Tensor();
}

}  // namespace pdegen

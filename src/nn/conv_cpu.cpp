// Conv on the CPU: oneDNN convolution primitives (nn/conv_family_cpu.hpp), built once per input shape
// and cached in the layer. The bias is the primitives' own: oneDNN adds it in the forward kernel and
// computes its gradient with the weights'.
#include <dnnl.hpp>

#include "nn/conv.hpp"
#include "nn/conv_family_cpu.hpp"

namespace pdegen {

using ConvPrimitives =
    ConvFamilyPlan<dnnl::convolution_forward, dnnl::convolution_backward_data, dnnl::convolution_backward_weights>;

struct Conv::CpuPlan : ConvPrimitives {
  using ConvPrimitives::ConvPrimitives;
  Tensor diff_bias;  // [Cout], what backward-weights writes, then added into the registry's gradient
};

void Conv::CpuPlanDeleter::operator()(CpuPlan* plan) const { delete plan; }

Tensor Conv::forward_cpu(const Tensor& x, Mode mode) {
  const Shape out_shape = output_shape(x.shape());
  if (!cpu_plan_ || !(cpu_plan_->in_shape() == x.shape())) {
    ConvPrimitives::Geometry g;
    g.algorithm = dnnl::algorithm::convolution_direct;
    g.in = x.shape();
    g.out = out_shape;
    g.plain_weights = cpu::plain_desc(weight_shape());
    if (config_.bias) g.bias = cpu::plain_desc(Shape{config_.out_channels});
    g.ndim = config_.ndim;
    g.stride = config_.stride;
    g.padding = config_.padding;
    cpu_plan_.reset(new CpuPlan(std::move(g), fmt::format("conv '{}'", name_)));
    if (config_.bias) cpu_plan_->diff_bias = Tensor::empty(Shape{config_.out_channels});
  }

  Tensor y = Tensor::empty(out_shape, DType::f32, Device::cpu, cpu::channel_block_for(config_.out_channels));
  cpu_plan_->forward(x, registry_->value(weight_id_), config_.bias ? registry_->value(bias_id_) : Tensor(), y);
  // The caller's tensor, not a re-laid-out copy: it is usually alive anyway (the previous layer's
  // output), so keeping it costs no memory; backward redoes the reorder if one was needed.
  x_ = mode == Mode::train ? x : Tensor();
  return y;
}

Tensor Conv::backward_cpu(const Tensor& dy_in) {
  CpuPlan& p = *cpu_plan_;
  cpu::DnnlBuffer dy_scratch;
  const dnnl::memory dy = p.diff_dst(dy_in, dy_scratch);

  // Parameter gradients first, so the reducer can ship them while dx is computed.
  p.backward_weights(x_, dy, registry_->grad(weight_id_), p.diff_bias);
  registry_->grad_ready(weight_id_);
  if (config_.bias) {
    float* db = registry_->grad(bias_id_).data<float>();
    const float* g = p.diff_bias.data<float>();
    for (int64_t o = 0; o < config_.out_channels; ++o) db[o] += g[o];
    registry_->grad_ready(bias_id_);
  }
  if (!needs_input_grad_) return Tensor();

  // dx in the layout the forward input came in.
  Tensor dx = Tensor::empty(x_.shape(), DType::f32, Device::cpu, x_.channel_block());
  p.backward_data(dy, registry_->value(weight_id_), dx);
  return dx;
}

}  // namespace pdegen

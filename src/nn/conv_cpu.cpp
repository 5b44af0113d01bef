// Conv on the CPU: oneDNN convolution primitives (forward, backward data, backward weights+bias),
// built once per input shape and cached in the layer. Activations whose channels block stay in the
// channel-blocked layout with no copies; for the others (1 input channel, a 1-channel head) oneDNN
// picks the layout and we reorder, since some of its plain-layout kernels (plain dst, plain diff_src)
// are reference loops a hundred times slower. oneDNN also
// chooses the weight layouts (format_tag::any); the canonical plain weights are reordered into them.
#include <spdlog/spdlog.h>

#include <dnnl.hpp>
#include <unordered_map>

#include "backend/cpu/dnnl_context.hpp"
#include "nn/conv.hpp"

namespace pdegen {

namespace {

using dnnl::memory;

// `t`'s data in the layout `want`: its own memory when it is laid out so, else a oneDNN reorder into
// `scratch` (possibly padded, as oneDNN's blocked layouts of odd channel counts are).
memory as_layout(const Tensor& t, const memory::desc& want, cpu::DnnlBuffer& scratch) {
  memory own = cpu::memory_of(t);
  if (own.get_desc() == want) return own;
  scratch = cpu::make_buffer(want);
  cpu::reorder(own, scratch.memory);
  return scratch.memory;
}

// A primitive's result destined for `t`: written into `t` directly when the primitive's layout is
// t's, else into a scratch buffer that finish() reorders into `t`.
class Destination {
 public:
  Destination(const Tensor& t, const memory::desc& produced) : target_(cpu::memory_of(t)), written_(target_) {
    if (produced == target_.get_desc()) return;
    scratch_ = cpu::make_buffer(produced);
    written_ = scratch_.memory;
    copy_ = true;
  }
  const memory& written() const { return written_; }
  void finish() const {
    if (copy_) cpu::reorder(written_, target_);
  }

 private:
  memory target_, written_;
  cpu::DnnlBuffer scratch_;
  bool copy_ = false;
};

// A reorder primitive from one layout to another; with `accumulate` it adds into the destination.
dnnl::reorder make_reorder(const memory::desc& from, const memory::desc& to, bool accumulate) {
  dnnl::primitive_attr attr;
  if (accumulate) {
    dnnl::post_ops ops;
    ops.append_sum(1.0f);
    attr.set_post_ops(ops);
  }
  dnnl::reorder r;
  DNNL_CHECK(r = dnnl::reorder(dnnl::reorder::primitive_desc(cpu::engine(), from, cpu::engine(), to, attr)));
  return r;
}

// The registry's plain weights in the layout a primitive chose: the registry memory itself when that
// layout is plain, otherwise a reorder into a buffer on every call (the weights change every step,
// and the reorder is tiny next to the convolution).
class PrimitiveWeights {
 public:
  PrimitiveWeights() = default;
  PrimitiveWeights(const memory::desc& plain, const memory::desc& wanted) : plain_(plain) {
    if (wanted == plain) return;
    buffer_ = cpu::make_buffer(wanted);
    reorder_ = make_reorder(plain, wanted, false);
    reordered_ = true;
  }
  memory get(const Tensor& weights) {
    memory plain(plain_, cpu::engine(), weights.raw());
    if (!reordered_) return plain;
    DNNL_CHECK(reorder_.execute(cpu::stream(), plain, buffer_.memory));
    return buffer_.memory;
  }

 private:
  memory::desc plain_;
  cpu::DnnlBuffer buffer_;
  dnnl::reorder reorder_;
  bool reordered_ = false;
};

}  // namespace

struct Conv::CpuPlan {
  Shape in_shape;  // cache key: everything else follows from it and the config
  // Layouts the primitives work in: the activation layouts where the channels block, oneDNN's
  // choice (format_tag::any) where they do not, because some plain-layout kernels are reference loops.
  memory::desc src_md, dst_md;
  memory::desc plain_weights_md, bias_md;  // bias_md is empty without bias
  memory::dims strides, padding;

  dnnl::convolution_forward::primitive_desc fwd_pd;
  dnnl::convolution_forward fwd;
  PrimitiveWeights fwd_weights;

  // Built by the first backward for this shape (an eval-only layer never needs them).
  bool has_backward = false;
  dnnl::convolution_backward_data::primitive_desc bwd_data_pd;
  dnnl::convolution_backward_data bwd_data;
  PrimitiveWeights bwd_data_weights;
  dnnl::convolution_backward_weights::primitive_desc bwd_weights_pd;
  dnnl::convolution_backward_weights bwd_weights;
  cpu::DnnlBuffer diff_weights;      // in the layout bwd_weights chose
  dnnl::reorder accumulate_weights;  // grad (plain) += diff_weights
  Tensor diff_bias;                  // [Cout], added into the registry's gradient
};

void Conv::CpuPlanDeleter::operator()(CpuPlan* plan) const { delete plan; }

namespace {
// The activation layout of `shape` when its channels block, "let the primitive choose" otherwise.
memory::desc activation_or_any(const Shape& shape) {
  const int block = cpu::channel_block_for(shape[1]);
  if (block > 1) return cpu::desc_of(shape, block);
  return memory::desc(cpu::dims_of(shape), memory::data_type::f32, memory::format_tag::any);
}
}  // namespace

Tensor Conv::forward_cpu(const Tensor& x, Mode mode) {
  const Shape out_shape = output_shape(x.shape());
  if (!cpu_plan_ || !(cpu_plan_->in_shape == x.shape())) {
    std::unique_ptr<CpuPlan, CpuPlanDeleter> p(new CpuPlan);
    p->in_shape = x.shape();
    p->plain_weights_md = cpu::plain_desc(weight_shape());
    if (config_.bias) p->bias_md = cpu::plain_desc(Shape{config_.out_channels});
    p->strides = memory::dims(static_cast<size_t>(config_.ndim), config_.stride);
    p->padding = memory::dims(static_cast<size_t>(config_.ndim), config_.padding);
    const memory::desc any_weights(cpu::dims_of(weight_shape()), memory::data_type::f32,
                                   memory::format_tag::any);
    // An empty bias descriptor means "no bias" to oneDNN. Floor division of the output extent
    // makes padding_r = padding consistent even when the last window does not fit.
    DNNL_CHECK(p->fwd_pd = dnnl::convolution_forward::primitive_desc(
                   dnnl::convolution_forward::desc(
                       dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
                       activation_or_any(x.shape()), any_weights, p->bias_md, activation_or_any(out_shape),
                       p->strides, p->padding, p->padding),
                   cpu::engine()));
    DNNL_CHECK(p->fwd = dnnl::convolution_forward(p->fwd_pd));
    p->src_md = p->fwd_pd.src_desc();
    p->dst_md = p->fwd_pd.dst_desc();
    p->fwd_weights = PrimitiveWeights(p->plain_weights_md, p->fwd_pd.weights_desc());
    spdlog::debug("conv '{}' {}: forward {}", name_, x.shape().str(), p->fwd_pd.impl_info_str());
    cpu_plan_ = std::move(p);
  }
  CpuPlan& p = *cpu_plan_;

  cpu::DnnlBuffer src_scratch;
  Tensor y = Tensor::empty(out_shape, DType::f32, Device::cpu, cpu::channel_block_for(config_.out_channels));
  const Destination dst(y, p.dst_md);
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, as_layout(x, p.src_md, src_scratch)},
                                       {DNNL_ARG_WEIGHTS, p.fwd_weights.get(registry_->value(weight_id_))},
                                       {DNNL_ARG_DST, dst.written()}};
  if (config_.bias)
    args.emplace(DNNL_ARG_BIAS, memory(p.bias_md, cpu::engine(), registry_->value(bias_id_).raw()));
  DNNL_CHECK(p.fwd.execute(cpu::stream(), args));
  cpu::stream().wait();
  dst.finish();

  // The caller's tensor, not a re-laid-out copy: it is usually alive anyway (the previous layer's
  // output), so keeping it costs no memory; backward redoes the reorder if one was needed.
  x_ = mode == Mode::train ? x : Tensor();
  return y;
}

Tensor Conv::backward_cpu(const Tensor& dy_in) {
  CpuPlan& p = *cpu_plan_;
  if (!p.has_backward) {
    const memory::desc any_weights(cpu::dims_of(weight_shape()), memory::data_type::f32,
                                   memory::format_tag::any);
    DNNL_CHECK(p.bwd_weights_pd = dnnl::convolution_backward_weights::primitive_desc(
                   dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_direct, p.src_md,
                                                            any_weights, p.bias_md, p.dst_md, p.strides,
                                                            p.padding, p.padding),
                   cpu::engine(), p.fwd_pd));
    DNNL_CHECK(p.bwd_weights = dnnl::convolution_backward_weights(p.bwd_weights_pd));
    p.diff_weights = cpu::make_buffer(p.bwd_weights_pd.diff_weights_desc());
    p.accumulate_weights = make_reorder(p.bwd_weights_pd.diff_weights_desc(), p.plain_weights_md, true);
    if (config_.bias) p.diff_bias = Tensor::empty(Shape{config_.out_channels});

    DNNL_CHECK(p.bwd_data_pd = dnnl::convolution_backward_data::primitive_desc(
                   dnnl::convolution_backward_data::desc(dnnl::algorithm::convolution_direct,
                                                         activation_or_any(p.in_shape), any_weights, p.dst_md,
                                                         p.strides, p.padding, p.padding),
                   cpu::engine(), p.fwd_pd));
    DNNL_CHECK(p.bwd_data = dnnl::convolution_backward_data(p.bwd_data_pd));
    p.bwd_data_weights = PrimitiveWeights(p.plain_weights_md, p.bwd_data_pd.weights_desc());
    spdlog::debug("conv '{}' {}: backward weights {}, backward data {}", name_, p.in_shape.str(),
                  p.bwd_weights_pd.impl_info_str(), p.bwd_data_pd.impl_info_str());
    p.has_backward = true;
  }

  cpu::DnnlBuffer dy_scratch, src_scratch;
  const memory dy = as_layout(dy_in, p.dst_md, dy_scratch);

  // Parameter gradients first, so the reducer can ship them while dx is computed.
  {
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, as_layout(x_, p.src_md, src_scratch)},
                                         {DNNL_ARG_DIFF_DST, dy},
                                         {DNNL_ARG_DIFF_WEIGHTS, p.diff_weights.memory}};
    if (config_.bias) args.emplace(DNNL_ARG_DIFF_BIAS, memory(p.bias_md, cpu::engine(), p.diff_bias.raw()));
    DNNL_CHECK(p.bwd_weights.execute(cpu::stream(), args));
    memory grad(p.plain_weights_md, cpu::engine(), registry_->grad(weight_id_).raw());
    DNNL_CHECK(p.accumulate_weights.execute(cpu::stream(), p.diff_weights.memory, grad));
    cpu::stream().wait();
    registry_->grad_ready(weight_id_);
    if (config_.bias) {
      float* db = registry_->grad(bias_id_).data<float>();
      const float* g = p.diff_bias.data<float>();
      for (int64_t o = 0; o < config_.out_channels; ++o) db[o] += g[o];
      registry_->grad_ready(bias_id_);
    }
  }
  src_scratch = {};

  // dx in the layout the forward input came in.
  Tensor dx = Tensor::empty(x_.shape(), DType::f32, Device::cpu, x_.channel_block());
  const Destination diff_src(dx, p.bwd_data_pd.diff_src_desc());
  DNNL_CHECK(p.bwd_data.execute(cpu::stream(),
                                {{DNNL_ARG_DIFF_DST, dy},
                                 {DNNL_ARG_WEIGHTS, p.bwd_data_weights.get(registry_->value(weight_id_))},
                                 {DNNL_ARG_DIFF_SRC, diff_src.written()}}));
  cpu::stream().wait();
  diff_src.finish();
  return dx;
}

}  // namespace pdegen

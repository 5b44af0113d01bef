// ConvTranspose on the CPU: oneDNN deconvolution primitives (forward, backward data, backward
// weights), built once per input shape and cached in the layer; the bias and its gradient are our
// own OpenMP loops, because oneDNN 2.6 adds a deconvolution bias in a separate pass five times slower
// than the deconvolution itself (5.9 ms against 1.1 ms for the U-Net's 32 -> 16 up-sampler). Layout policy as
// in conv_cpu.cpp: blocked activations pass through without copies, non-blocking channel counts let oneDNN
// pick the layout. oneDNN's deconvolution weights are indexed [Cout, Cin, k...]; PyTorch's [Cin, Cout, k...]
// order is the same memory read with the first two strides swapped (no copy).
#include <spdlog/spdlog.h>

#include <dnnl.hpp>
#include <unordered_map>
#include <utility>
#include <vector>

#include "backend/cpu/dnnl_context.hpp"
#include "nn/conv_transpose.hpp"

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

struct ConvTranspose::CpuPlan {
  Shape in_shape;  // cache key: everything else follows from it and the config
  // Layouts the primitives work in: the activation layouts where the channels block, oneDNN's
  // choice (format_tag::any) where they do not, because some plain-layout kernels are reference loops.
  memory::desc src_md, dst_md;
  memory::desc plain_weights_md;
  memory::dims strides, padding;

  dnnl::deconvolution_forward::primitive_desc fwd_pd;
  dnnl::deconvolution_forward fwd;
  PrimitiveWeights fwd_weights;

  // Built by the first backward for this shape (an eval-only layer never needs them).
  bool has_backward = false;
  dnnl::deconvolution_backward_data::primitive_desc bwd_data_pd;
  dnnl::deconvolution_backward_data bwd_data;
  PrimitiveWeights bwd_data_weights;
  dnnl::deconvolution_backward_weights::primitive_desc bwd_weights_pd;
  dnnl::deconvolution_backward_weights bwd_weights;
  cpu::DnnlBuffer diff_weights;      // in the layout bwd_weights chose
  dnnl::reorder accumulate_weights;  // grad (plain) += diff_weights
};

void ConvTranspose::CpuPlanDeleter::operator()(CpuPlan* plan) const { delete plan; }

namespace {
// oneDNN's [Cout, Cin, k...] view of PyTorch-ordered [Cin, Cout, k...] weights.
memory::desc pytorch_weights_desc(const Shape& torch_shape) {
  memory::dims dims = cpu::dims_of(torch_shape), strides(dims.size());
  int64_t acc = 1;
  for (size_t a = dims.size(); a-- > 0;) {
    strides[a] = acc;
    acc *= dims[a];
  }
  std::swap(dims[0], dims[1]);
  std::swap(strides[0], strides[1]);
  return memory::desc(dims, memory::data_type::f32, strides);
}

// Storage of an N, C, S tensor in channel block b is N*C/b runs of S*b values; value j of run r
// belongs to channel (r % (C/b))*b + j % b. The bias loops walk that storage contiguously.

// y[n,c,s] += bias[c].
void add_bias(Tensor& y, const float* bias) {
  const int64_t b = y.channel_block(), blocks = y.dim(1) / b, runs = y.dim(0) * blocks,
                S = y.shape().spatial();
  float* d = y.data<float>();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t r = 0; r < runs; ++r)
    for (int64_t s = 0; s < S; ++s) {
      float* v = d + (r * S + s) * b;
      const float* bb = bias + (r % blocks) * b;
      for (int64_t j = 0; j < b; ++j) v[j] += bb[j];
    }
}

// db[c] += sum over n, s of dy[n,c,s], summed in double per thread.
void accumulate_bias_grad(const Tensor& dy, float* db) {
  const int64_t C = dy.dim(1), b = dy.channel_block(), blocks = C / b, runs = dy.dim(0) * blocks,
                S = dy.shape().spatial();
  const float* g = dy.data<float>();
  std::vector<double> total(static_cast<size_t>(C), 0.0);
#pragma omp parallel
  {
    std::vector<double> part(static_cast<size_t>(C), 0.0);
#pragma omp for collapse(2) schedule(static)
    for (int64_t r = 0; r < runs; ++r)
      for (int64_t s = 0; s < S; ++s) {
        const float* v = g + (r * S + s) * b;
        double* acc = part.data() + (r % blocks) * b;
        for (int64_t j = 0; j < b; ++j) acc[j] += v[j];
      }
#pragma omp critical
    for (int64_t c = 0; c < C; ++c) total[static_cast<size_t>(c)] += part[static_cast<size_t>(c)];
  }
  for (int64_t c = 0; c < C; ++c) db[c] += static_cast<float>(total[static_cast<size_t>(c)]);
}

// The activation layout of `shape` when its channels block, "let the primitive choose" otherwise.
memory::desc activation_or_any(const Shape& shape) {
  const int block = cpu::channel_block_for(shape[1]);
  if (block > 1) return cpu::desc_of(shape, block);
  return memory::desc(cpu::dims_of(shape), memory::data_type::f32, memory::format_tag::any);
}
}  // namespace

Tensor ConvTranspose::forward_cpu(const Tensor& x, Mode mode) {
  const Shape out_shape = output_shape(x.shape());
  if (!cpu_plan_ || !(cpu_plan_->in_shape == x.shape())) {
    std::unique_ptr<CpuPlan, CpuPlanDeleter> p(new CpuPlan);
    p->in_shape = x.shape();
    p->plain_weights_md = pytorch_weights_desc(weight_shape());
    p->strides = memory::dims(static_cast<size_t>(config_.ndim), config_.stride);
    p->padding = memory::dims(static_cast<size_t>(config_.ndim), config_.padding);
    const memory::desc any_weights(p->plain_weights_md.dims(), memory::data_type::f32,
                                   memory::format_tag::any);
    // An empty bias descriptor means "no bias" to oneDNN.
    const memory::desc no_bias;
    DNNL_CHECK(p->fwd_pd = dnnl::deconvolution_forward::primitive_desc(
                   dnnl::deconvolution_forward::desc(
                       dnnl::prop_kind::forward_training, dnnl::algorithm::deconvolution_direct,
                       activation_or_any(x.shape()), any_weights, no_bias, activation_or_any(out_shape),
                       p->strides, p->padding, p->padding),
                   cpu::engine()));
    DNNL_CHECK(p->fwd = dnnl::deconvolution_forward(p->fwd_pd));
    p->src_md = p->fwd_pd.src_desc();
    p->dst_md = p->fwd_pd.dst_desc();
    p->fwd_weights = PrimitiveWeights(p->plain_weights_md, p->fwd_pd.weights_desc());
    spdlog::debug("conv_transpose '{}' {}: forward {}", name_, x.shape().str(), p->fwd_pd.impl_info_str());
    cpu_plan_ = std::move(p);
  }
  CpuPlan& p = *cpu_plan_;

  cpu::DnnlBuffer src_scratch;
  Tensor y = Tensor::empty(out_shape, DType::f32, Device::cpu, cpu::channel_block_for(config_.out_channels));
  const Destination dst(y, p.dst_md);
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, as_layout(x, p.src_md, src_scratch)},
                                       {DNNL_ARG_WEIGHTS, p.fwd_weights.get(registry_->value(weight_id_))},
                                       {DNNL_ARG_DST, dst.written()}};
  DNNL_CHECK(p.fwd.execute(cpu::stream(), args));
  cpu::stream().wait();
  dst.finish();
  if (config_.bias) add_bias(y, registry_->value(bias_id_).data<float>());

  // The caller's tensor, not a re-laid-out copy: it is usually alive anyway (the previous layer's
  // output), so keeping it costs no memory; backward redoes the reorder if one was needed.
  x_ = mode == Mode::train ? x : Tensor();
  return y;
}

Tensor ConvTranspose::backward_cpu(const Tensor& dy_in) {
  CpuPlan& p = *cpu_plan_;
  if (!p.has_backward) {
    const memory::desc any_weights(p.plain_weights_md.dims(), memory::data_type::f32,
                                   memory::format_tag::any);
    DNNL_CHECK(p.bwd_weights_pd = dnnl::deconvolution_backward_weights::primitive_desc(
                   dnnl::deconvolution_backward_weights::desc(dnnl::algorithm::deconvolution_direct, p.src_md,
                                                              any_weights, memory::desc(), p.dst_md,
                                                              p.strides, p.padding, p.padding),
                   cpu::engine(), p.fwd_pd));
    DNNL_CHECK(p.bwd_weights = dnnl::deconvolution_backward_weights(p.bwd_weights_pd));
    p.diff_weights = cpu::make_buffer(p.bwd_weights_pd.diff_weights_desc());
    p.accumulate_weights = make_reorder(p.bwd_weights_pd.diff_weights_desc(), p.plain_weights_md, true);

    DNNL_CHECK(p.bwd_data_pd = dnnl::deconvolution_backward_data::primitive_desc(
                   dnnl::deconvolution_backward_data::desc(dnnl::algorithm::deconvolution_direct,
                                                           activation_or_any(p.in_shape), any_weights,
                                                           p.dst_md, p.strides, p.padding, p.padding),
                   cpu::engine(), p.fwd_pd));
    DNNL_CHECK(p.bwd_data = dnnl::deconvolution_backward_data(p.bwd_data_pd));
    p.bwd_data_weights = PrimitiveWeights(p.plain_weights_md, p.bwd_data_pd.weights_desc());
    spdlog::debug("conv_transpose '{}' {}: backward weights {}, backward data {}", name_, p.in_shape.str(),
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
    DNNL_CHECK(p.bwd_weights.execute(cpu::stream(), args));
    memory grad(p.plain_weights_md, cpu::engine(), registry_->grad(weight_id_).raw());
    DNNL_CHECK(p.accumulate_weights.execute(cpu::stream(), p.diff_weights.memory, grad));
    cpu::stream().wait();
    registry_->grad_ready(weight_id_);
    if (config_.bias) {
      accumulate_bias_grad(dy_in, registry_->grad(bias_id_).data<float>());
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

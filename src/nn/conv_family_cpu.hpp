// The oneDNN primitives of one convolution-like layer at one input shape, shared by Conv and
// ConvTranspose on the CPU: oneDNN's convolution and deconvolution primitives have the same
// descriptors, so one template over the three primitive types serves both. A convolution asked to
// run as Winograd (cpu::runs_winograd) runs each pass that oneDNN has a Winograd kernel for so, and
// the others direct.
//
// Layouts: activations whose channels block are passed in the channel-blocked layout with no copies;
// for a single channel (the input, a 1-channel head) oneDNN picks the layout and we reorder
// (cpu::activation_or_any). A layer with a channel count that is an odd multiple of 8 runs
// channels-last (NHWC, cpu::runs_channels_last), where oneDNN has fast kernels for 8-channel groups.
// Other channel counts that do not fill a block (4, 12) run on zero-padded channels
// (cpu::padded_channels): the activation is reordered into the padded-blocked layout, which is byte
// for byte the blocked layout of the padded count, and the weights sit in a zero-padded copy, so
// padded channels contribute nothing and their gradients are dropped. oneDNN also chooses the weight
// layouts (format_tag::any); the canonical plain weights are reordered into them on every call. In
// bf16 (cpu::activation_block) activations are channels-last, which oneDNN's AMX kernels run on, and
// the weights are converted to bf16 by that reorder; bias and weight gradients stay fp32. The
// backward primitives are built on first use, so an inference-only layer never builds them and one
// whose dx nobody needs never builds the backward-data one.
#pragma once

#include <spdlog/spdlog.h>

#include <cstring>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>

#include "backend/cpu/dnnl_util.hpp"
#include "nn/conv_family.hpp"

namespace pdegen {

template <class Forward, class BackwardData, class BackwardWeights>
class ConvFamilyPlan {
 public:
  using memory = dnnl::memory;

  // The primitives for input shape `in` (output `out`) and activations of `dtype` (fp32 or bf16) of
  // a layer of the given geometry, whose registry weights oneDNN reads as `plain_weights`; with
  // `primitive_bias` the primitives add the bias and compute its gradient. `label` names the layer in debug
  // logs. Floor division of the output extent makes padding_r = padding consistent even when the last window
  // does not fit.
  ConvFamilyPlan(dnnl::algorithm algorithm, const ConvGeometry& geometry, const Shape& in, const Shape& out,
                 DType dtype, const memory::desc& plain_weights, bool primitive_bias, std::string label)
      : algorithm_(algorithm),
        in_(in),
        out_(out),
        dtype_(dtype),
        plain_weights_(plain_weights),
        nhwc_(dtype == DType::bf16 || cpu::runs_channels_last(in[1], out[1])),
        bias_(primitive_bias ? cpu::plain_desc(Shape{run_channels(geometry.out_channels)}) : memory::desc()),
        label_(std::move(label)),
        strides_(cpu::uniform_dims(geometry.ndim, geometry.stride)),
        padding_(cpu::uniform_dims(geometry.ndim, geometry.padding)) {
    fwd_pd_ = with_direct_fallback<typename Forward::primitive_desc>([&](dnnl::algorithm a) {
      return typename Forward::primitive_desc(
          typename Forward::desc(dnnl::prop_kind::forward_training, a, primitive_layout(in_),
                                 any_weights(dtype_), bias_, primitive_layout(out_), strides_, padding_,
                                 padding_),
          cpu::engine());
    });
    DNNL_CHECK(fwd_ = Forward(fwd_pd_));
    src_md_ = fwd_pd_.src_desc();
    dst_md_ = fwd_pd_.dst_desc();
    src_ours_ = ours(in_, src_md_);
    dst_ours_ = ours(out_, dst_md_);
    fwd_weights_ = cpu::PrimitiveWeights(plain_weights_, fwd_pd_.weights_desc());
    spdlog::debug("{} {}: forward {}", label_, in_.str(), fwd_pd_.impl_info_str());
  }

  bool runs(const Tensor& x) const { return x.shape() == in_ && x.dtype() == dtype_; }

  // y = op(x, weights) (+ bias with primitive_bias); x in any layout, y in its activation one.
  Tensor forward(const Tensor& x, const Tensor& weights, const Tensor& bias) {
    Tensor y = Tensor::empty(out_, dtype_, Device::cpu, cpu::activation_block(out_[1], dtype_));
    cpu::DnnlBuffer src_scratch;
    const cpu::Destination dst(y, dst_ours_);
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, source(x, src_scratch)},
                                         {DNNL_ARG_WEIGHTS, fwd_weights_.get(weights)},
                                         {DNNL_ARG_DST, cpu::view_as(dst.written(), dst_md_)}};
    if (has_bias()) args.emplace(DNNL_ARG_BIAS, padded_bias(bias));
    cpu::execute(fwd_, args);
    dst.finish();
    return y;
  }

  // grad_weights += dL/dW for the forward input x and the output gradient dy; with a bias,
  // diff_bias = dL/db (overwritten). Returns dy in the layout the backward primitives read, for
  // backward_data: dy's own memory, or a reorder into `dy_scratch`.
  memory backward_weights(const Tensor& x, const Tensor& dy, cpu::DnnlBuffer& dy_scratch,
                          const Tensor& grad_weights, const Tensor& diff_bias) {
    if (!has_bwd_weights_) {
      bwd_weights_pd_ =
          with_direct_fallback<typename BackwardWeights::primitive_desc>([&](dnnl::algorithm a) {
            return typename BackwardWeights::primitive_desc(
                typename BackwardWeights::desc(a, src_md_, any_weights(DType::f32), bias_, dst_md_, strides_,
                                               padding_, padding_),
                cpu::engine(), fwd_pd_);
          });
      pad_src_explicitly_if_reference();
      DNNL_CHECK(bwd_weights_ = BackwardWeights(bwd_weights_pd_));
      diff_weights_ = cpu::GradientAccumulator(bwd_weights_pd_.diff_weights_desc(), plain_weights_);
      spdlog::debug("{} {}: backward weights {}", label_, in_.str(), bwd_weights_pd_.impl_info_str());
      has_bwd_weights_ = true;
    }
    const memory diff_dst = cpu::view_as(cpu::as_layout(dy, dst_ours_, dy_scratch), dst_md_);
    cpu::DnnlBuffer src_scratch;
    std::unordered_map<int, memory> args{
        {DNNL_ARG_SRC, padded_src_.defined() ? padded_source(x, src_scratch) : source(x, src_scratch)},
        {DNNL_ARG_DIFF_DST, diff_dst},
        {DNNL_ARG_DIFF_WEIGHTS, diff_weights_.produced()}};
    const bool padded_bias = has_bias() && bias_.dims()[0] != out_[1];
    Tensor bias_scratch = padded_bias ? Tensor::empty({bias_.dims()[0]}) : diff_bias;
    if (has_bias()) args.emplace(DNNL_ARG_DIFF_BIAS, memory(bias_, cpu::engine(), bias_scratch.raw()));
    cpu::execute(bwd_weights_, args);
    if (padded_bias) std::memcpy(diff_bias.raw(), bias_scratch.raw(), static_cast<size_t>(out_[1]) * 4);
    diff_weights_.add_to(grad_weights);
    return diff_dst;
  }

  // dL/dx = op^T(dy, weights) for a forward input of shape in_shape() in channel block `x_block`,
  // returned in that layout; dy as backward_weights returned it.
  Tensor backward_data(const memory& dy, const Tensor& weights, int x_block) {
    if (!has_bwd_data_) {
      bwd_data_pd_ = with_direct_fallback<typename BackwardData::primitive_desc>([&](dnnl::algorithm a) {
        return typename BackwardData::primitive_desc(
            typename BackwardData::desc(a, primitive_layout(in_), any_weights(dtype_), dst_md_, strides_,
                                        padding_, padding_),
            cpu::engine(), fwd_pd_);
      });
      DNNL_CHECK(bwd_data_ = BackwardData(bwd_data_pd_));
      bwd_data_weights_ = cpu::PrimitiveWeights(plain_weights_, bwd_data_pd_.weights_desc());
      spdlog::debug("{} {}: backward data {}", label_, in_.str(), bwd_data_pd_.impl_info_str());
      has_bwd_data_ = true;
    }
    Tensor dx = Tensor::empty(in_, dtype_, Device::cpu, x_block);
    const cpu::Destination diff_src(dx, ours(in_, bwd_data_pd_.diff_src_desc()));
    cpu::execute(bwd_data_,
                 {{DNNL_ARG_DIFF_DST, dy},
                  {DNNL_ARG_WEIGHTS, bwd_data_weights_.get(weights)},
                  {DNNL_ARG_DIFF_SRC, cpu::view_as(diff_src.written(), bwd_data_pd_.diff_src_desc())}});
    diff_src.finish();
    return dx;
  }

 private:
  // oneDNN 2.6.3 has no JIT backward-weights kernel for a convolution whose blocked image is smaller
  // than its kernel (the 2x2x2 innermost level of a 3D U-Net at 16^3) and falls back to its reference
  // loop: 0.15-0.31 s a call, 90% of such a step. The same gradient comes from the input zero-padded
  // into a buffer whose border stays zero and no implicit padding, which the JIT kernels take.
  void pad_src_explicitly_if_reference() {
    if constexpr (std::is_same_v<BackwardWeights, dnnl::convolution_backward_weights>) {
      if (std::string(bwd_weights_pd_.impl_info_str()).rfind("ref", 0) != 0) return;
      memory::dims dims = src_md_.dims();
      pad_offsets_.assign(dims.size(), 0);
      for (size_t d = 2; d < dims.size(); ++d) {
        pad_offsets_[d] = padding_[d - 2];
        dims[d] += 2 * padding_[d - 2];
      }
      const memory::dims none(padding_.size(), 0);
      const memory::desc padded_any(dims, src_md_.data_type(), memory::format_tag::any);
      try {
        const typename Forward::primitive_desc hint(
            typename Forward::desc(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
                                   padded_any, any_weights(dtype_), bias_, dst_md_, strides_, none, none),
            cpu::engine());
        typename BackwardWeights::primitive_desc pd(
            typename BackwardWeights::desc(dnnl::algorithm::convolution_direct, hint.src_desc(),
                                           any_weights(DType::f32), bias_, dst_md_, strides_, none, none),
            cpu::engine(), hint);
        if (std::string(pd.impl_info_str()).rfind("ref", 0) == 0) return;
        bwd_weights_pd_ = pd;
      } catch (const dnnl::error&) {
        return;
      }
      const auto bytes = static_cast<int64_t>(bwd_weights_pd_.src_desc().get_size());
      padded_src_ = Tensor::zeros(Shape{(bytes + 3) / 4});  // zero fp32 bits: zero in any float type
      spdlog::debug("{} {}: backward weights on an explicitly padded input", label_, in_.str());
    }
  }
  // x reordered into the interior of the zero-bordered buffer the padded backward weights read.
  memory padded_source(const Tensor& x, cpu::DnnlBuffer& scratch) const {
    const memory::desc whole = bwd_weights_pd_.src_desc();
    const memory from = source(x, scratch);
    const memory interior(whole.submemory_desc(src_md_.dims(), pad_offsets_), cpu::engine(),
                          padded_src_.raw());
    cpu::execute(cpu::make_reorder(src_md_, interior.get_desc(), false),
                 {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, interior}});
    return memory(whole, cpu::engine(), padded_src_.raw());
  }

  // The primitive descriptor `make(algorithm)` for the layer's algorithm, or, where oneDNN has no
  // Winograd kernel for it (layout, shape, ISA), the direct one.
  template <class Pd, class Make>
  Pd with_direct_fallback(Make make) const {
    if (algorithm_ == dnnl::algorithm::convolution_winograd) try {
        return make(algorithm_);
      } catch (const dnnl::error&) {
        spdlog::debug("{} {}: no Winograd kernel, running direct", label_, in_.str());
      }
    const dnnl::algorithm direct = algorithm_ == dnnl::algorithm::convolution_winograd
                                       ? dnnl::algorithm::convolution_direct
                                       : algorithm_;
    Pd pd;
    DNNL_CHECK(pd = make(direct));
    return pd;
  }
  bool has_bias() const { return bias_.get_size() != 0; }
  int64_t run_channels(int64_t c) const { return nhwc_ ? c : cpu::padded_channels(c); }
  memory::desc primitive_layout(const Shape& shape) const {
    if (!nhwc_) return cpu::activation_or_any(cpu::with_padded_channels(shape));
    return memory::desc(cpu::dims_of(shape), cpu::dnnl_type(dtype_),
                        shape.rank() == 4 ? memory::format_tag::nhwc : memory::format_tag::ndhwc);
  }
  // The weights the primitives see, of `dtype` (the activations' type; fp32 for the weight
  // gradient): [out, in, k...] with the channel counts they run on.
  memory::desc any_weights(DType dtype) const {
    memory::dims dims = plain_weights_.dims();
    dims[0] = run_channels(dims[0]);
    dims[1] = run_channels(dims[1]);
    return memory::desc(dims, cpu::dnnl_type(dtype), memory::format_tag::any);
  }
  // An activation of `shape` as the primitive's layout `padded` holds it: that layout itself, or,
  // where it pads the channels, the padded-blocked layout of the true count (the same bytes); in
  // bf16 our channels-last block, the same bytes as the primitive's NHWC.
  memory::desc ours(const Shape& shape, const memory::desc& padded) const {
    if (dtype_ == DType::bf16) return cpu::desc_of(shape, cpu::activation_block(shape[1], dtype_), dtype_);
    if (padded.dims()[1] == shape[1]) return padded;
    return cpu::desc_of(shape, cpu::preferred_channel_block());
  }
  memory source(const Tensor& x, cpu::DnnlBuffer& scratch) const {
    return cpu::view_as(cpu::as_layout(x, src_ours_, scratch), src_md_);
  }
  // The bias as the primitive reads it: the registry's, or a zero-padded copy.
  memory padded_bias(const Tensor& bias) {
    if (bias_.dims()[0] == out_[1]) return memory(bias_, cpu::engine(), bias.raw());
    if (!bias_padded_.defined()) bias_padded_ = Tensor::zeros({bias_.dims()[0]});
    std::memcpy(bias_padded_.raw(), bias.raw(), static_cast<size_t>(out_[1]) * 4);
    return memory(bias_, cpu::engine(), bias_padded_.raw());
  }

  dnnl::algorithm algorithm_;
  Shape in_, out_;
  DType dtype_;
  memory::desc plain_weights_;  // the registry's weights, as oneDNN indexes them
  bool nhwc_ = false;
  memory::desc bias_;  // plain [Cout]; empty when the primitives add no bias
  std::string label_;
  memory::dims strides_, padding_;
  // Layouts the primitives work in (padded channels), and ours of the same bytes (see the file comment).
  memory::desc src_md_, dst_md_, src_ours_, dst_ours_;
  Tensor bias_padded_;

  typename Forward::primitive_desc fwd_pd_;
  Forward fwd_;
  cpu::PrimitiveWeights fwd_weights_;

  bool has_bwd_weights_ = false;
  typename BackwardWeights::primitive_desc bwd_weights_pd_;
  Tensor padded_src_;  // defined when backward weights read an explicitly padded input
  memory::dims pad_offsets_;
  BackwardWeights bwd_weights_;
  cpu::GradientAccumulator diff_weights_;

  bool has_bwd_data_ = false;
  typename BackwardData::primitive_desc bwd_data_pd_;
  BackwardData bwd_data_;
  cpu::PrimitiveWeights bwd_data_weights_;
};

}  // namespace pdegen

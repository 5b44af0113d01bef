// The oneDNN primitives of one convolution-like layer at one input shape, shared by Conv and
// ConvTranspose on the CPU: oneDNN's convolution and deconvolution primitives have the same
// descriptors, so one template over the three primitive types serves both.
//
// Layouts: activations whose channels block are passed in the channel-blocked layout with no copies;
// for the others (1 input channel, a 1-channel head) oneDNN picks the layout and we reorder
// (cpu::activation_or_any). oneDNN also chooses the weight layouts (format_tag::any); the canonical
// plain weights are reordered into them on every call. The backward primitives are built on first
// use, so an inference-only layer never builds them and one whose dx nobody needs never builds the
// backward-data one.
#pragma once

#include <spdlog/spdlog.h>

#include <string>
#include <unordered_map>
#include <utility>

#include "backend/cpu/dnnl_util.hpp"

namespace pdegen {

template <class Forward, class BackwardData, class BackwardWeights>
class ConvFamilyPlan {
 public:
  using memory = dnnl::memory;

  struct Geometry {
    dnnl::algorithm algorithm = dnnl::algorithm::undef;
    Shape in, out;
    memory::desc plain_weights;  // the registry's weights, as oneDNN indexes them
    memory::desc bias;           // plain [Cout]; empty when the primitive adds no bias
    int ndim = 2, stride = 1, padding = 0;
  };

  // `label` names the layer in debug logs. Floor division of the output extent makes
  // padding_r = padding consistent even when the last window does not fit.
  ConvFamilyPlan(Geometry geometry, std::string label)
      : g_(std::move(geometry)),
        label_(std::move(label)),
        strides_(cpu::uniform_dims(g_.ndim, g_.stride)),
        padding_(cpu::uniform_dims(g_.ndim, g_.padding)) {
    DNNL_CHECK(fwd_pd_ = typename Forward::primitive_desc(
                   typename Forward::desc(dnnl::prop_kind::forward_training, g_.algorithm,
                                          cpu::activation_or_any(g_.in), any_weights(), g_.bias,
                                          cpu::activation_or_any(g_.out), strides_, padding_, padding_),
                   cpu::engine()));
    DNNL_CHECK(fwd_ = Forward(fwd_pd_));
    src_md_ = fwd_pd_.src_desc();
    dst_md_ = fwd_pd_.dst_desc();
    fwd_weights_ = cpu::PrimitiveWeights(g_.plain_weights, fwd_pd_.weights_desc());
    spdlog::debug("{} {}: forward {}", label_, g_.in.str(), fwd_pd_.impl_info_str());
  }

  const Shape& in_shape() const { return g_.in; }

  // y = op(x, weights) (+ bias when the geometry has one); x in any layout, y in its activation one.
  void forward(const Tensor& x, const Tensor& weights, const Tensor& bias, const Tensor& y) {
    cpu::DnnlBuffer src_scratch;
    const cpu::Destination dst(y, dst_md_);
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, cpu::as_layout(x, src_md_, src_scratch)},
                                         {DNNL_ARG_WEIGHTS, fwd_weights_.get(weights)},
                                         {DNNL_ARG_DST, dst.written()}};
    if (has_bias()) args.emplace(DNNL_ARG_BIAS, memory(g_.bias, cpu::engine(), bias.raw()));
    cpu::execute(fwd_, args);
    dst.finish();
  }

  // dy in the layout the backward primitives read: its own memory, or a reorder into `scratch`.
  memory diff_dst(const Tensor& dy, cpu::DnnlBuffer& scratch) const { return cpu::as_layout(dy, dst_md_, scratch); }

  // grad_weights += dL/dW for the forward input x; with a bias, diff_bias = dL/db (overwritten).
  void backward_weights(const Tensor& x, const memory& dy, const Tensor& grad_weights, const Tensor& diff_bias) {
    if (!has_bwd_weights_) {
      DNNL_CHECK(bwd_weights_pd_ = typename BackwardWeights::primitive_desc(
                     typename BackwardWeights::desc(g_.algorithm, src_md_, any_weights(), g_.bias, dst_md_,
                                                    strides_, padding_, padding_),
                     cpu::engine(), fwd_pd_));
      DNNL_CHECK(bwd_weights_ = BackwardWeights(bwd_weights_pd_));
      diff_weights_ = cpu::GradientAccumulator(bwd_weights_pd_.diff_weights_desc(), g_.plain_weights);
      spdlog::debug("{} {}: backward weights {}", label_, g_.in.str(), bwd_weights_pd_.impl_info_str());
      has_bwd_weights_ = true;
    }
    cpu::DnnlBuffer src_scratch;
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, cpu::as_layout(x, src_md_, src_scratch)},
                                         {DNNL_ARG_DIFF_DST, dy},
                                         {DNNL_ARG_DIFF_WEIGHTS, diff_weights_.produced()}};
    if (has_bias()) args.emplace(DNNL_ARG_DIFF_BIAS, memory(g_.bias, cpu::engine(), diff_bias.raw()));
    cpu::execute(bwd_weights_, args);
    diff_weights_.add_to(grad_weights);
  }

  // dx = op^T(dy, weights), written in dx's layout.
  void backward_data(const memory& dy, const Tensor& weights, const Tensor& dx) {
    if (!has_bwd_data_) {
      DNNL_CHECK(bwd_data_pd_ = typename BackwardData::primitive_desc(
                     typename BackwardData::desc(g_.algorithm, cpu::activation_or_any(g_.in), any_weights(),
                                                 dst_md_, strides_, padding_, padding_),
                     cpu::engine(), fwd_pd_));
      DNNL_CHECK(bwd_data_ = BackwardData(bwd_data_pd_));
      bwd_data_weights_ = cpu::PrimitiveWeights(g_.plain_weights, bwd_data_pd_.weights_desc());
      spdlog::debug("{} {}: backward data {}", label_, g_.in.str(), bwd_data_pd_.impl_info_str());
      has_bwd_data_ = true;
    }
    const cpu::Destination diff_src(dx, bwd_data_pd_.diff_src_desc());
    cpu::execute(bwd_data_, {{DNNL_ARG_DIFF_DST, dy},
                             {DNNL_ARG_WEIGHTS, bwd_data_weights_.get(weights)},
                             {DNNL_ARG_DIFF_SRC, diff_src.written()}});
    diff_src.finish();
  }

 private:
  bool has_bias() const { return g_.bias.get_size() != 0; }
  memory::desc any_weights() const {
    return memory::desc(g_.plain_weights.dims(), memory::data_type::f32, memory::format_tag::any);
  }

  Geometry g_;
  std::string label_;
  memory::dims strides_, padding_;
  // Layouts the primitives work in (see the file comment).
  memory::desc src_md_, dst_md_;

  typename Forward::primitive_desc fwd_pd_;
  Forward fwd_;
  cpu::PrimitiveWeights fwd_weights_;

  bool has_bwd_weights_ = false;
  typename BackwardWeights::primitive_desc bwd_weights_pd_;
  BackwardWeights bwd_weights_;
  cpu::GradientAccumulator diff_weights_;

  bool has_bwd_data_ = false;
  typename BackwardData::primitive_desc bwd_data_pd_;
  BackwardData bwd_data_;
  cpu::PrimitiveWeights bwd_data_weights_;
};

}  // namespace pdegen

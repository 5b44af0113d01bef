// Running oneDNN primitives on pdegen tensors: the plumbing the CPU layers share. A primitive may
// want its source in another layout than the tensor has (reorder into scratch), may produce its
// result in another layout than the destination tensor (write to scratch, reorder back), may want the
// registry's plain weights in a blocked layout (reorder every call: the weights change every step),
// and produces weight gradients that must be ADDED to the registry's (a reorder with a sum post-op).
#pragma once

#include <dnnl.hpp>
#include <unordered_map>

#include "backend/cpu/dnnl_context.hpp"

namespace pdegen::cpu {

// `n` copies of `value`: strides, kernel and padding that are the same on every spatial axis.
dnnl::memory::dims uniform_dims(int n, int64_t value);

// The activation layout of `shape` when its channels block, "let the primitive choose"
// (format_tag::any) otherwise (a single channel: the input, the head's output).
dnnl::memory::desc activation_or_any(const Shape& shape);

// The channel count a primitive runs on: `channels` rounded up to a whole channel block, except a
// single channel. oneDNN 2.6 has only reference loops (25-80x slower) for the backward passes of
// channel counts that do not fill a block; on zero-padded channels its fast kernels run instead.
int64_t padded_channels(int64_t channels);
// Whether a convolution from `in` to `out` channels runs channels-last (NHWC/NDHWC, true channel
// counts) instead: when one of them is an odd multiple of 8 on a 16-lane machine. oneDNN 2.6's
// NHWC kernels handle 8-channel groups at full speed (8 -> 8 at 64^2, batch 16: backward 0.49 +
// 0.42 ms against 0.86 + 0.91 padded), but their backward-data pass for 12 or 4 channels is slow
// (28 ms for 12 -> 12), so those are padded.
bool runs_channels_last(int64_t in, int64_t out);
// `shape` with its channels (axis 1) padded so.
Shape with_padded_channels(const Shape& shape);
// The same memory seen through another descriptor of the same size (a padded-blocked activation of
// C channels as a blocked one of its padded channel count: the bytes are the same).
dnnl::memory view_as(const dnnl::memory& m, const dnnl::memory::desc& desc);

// Runs a primitive on the process stream and waits for it.
void execute(const dnnl::primitive& primitive, const std::unordered_map<int, dnnl::memory>& args);

// A reorder primitive from one layout to another; with `accumulate` it adds into the destination.
dnnl::reorder make_reorder(const dnnl::memory::desc& from, const dnnl::memory::desc& to, bool accumulate);

// `t`'s data in the layout `want`: its own memory when it is laid out so, else a reorder into
// `scratch` (possibly padded, as oneDNN's blocked layouts of odd channel counts are).
dnnl::memory as_layout(const Tensor& t, const dnnl::memory::desc& want, DnnlBuffer& scratch);

// A primitive's result destined for `t`: written into `t` directly when the primitive's layout is
// t's, else into a scratch buffer that finish() reorders into `t`.
class Destination {
 public:
  Destination(const Tensor& t, const dnnl::memory::desc& produced);
  const dnnl::memory& written() const { return written_; }
  void finish() const;

 private:
  dnnl::memory target_, written_;
  DnnlBuffer scratch_;
  bool copy_ = false;
};

// The registry's plain weights in the layout a primitive chose: the registry memory itself when that
// layout is plain, otherwise a reorder into a buffer on every call (the weights change every step,
// and the reorder is tiny next to the convolution). When the primitive runs on padded channels (its
// dims exceed the registry's), the weights are first copied to the start of a zero-padded buffer.
class PrimitiveWeights {
 public:
  PrimitiveWeights() = default;
  PrimitiveWeights(const dnnl::memory::desc& plain, const dnnl::memory::desc& wanted);
  dnnl::memory get(const Tensor& weights);

 private:
  dnnl::memory::desc registry_;
  DnnlBuffer padded_;         // plain, zero-padded; only for padded channels
  dnnl::memory padded_part_;  // the registry's part of it
  dnnl::reorder into_padded_;
  DnnlBuffer buffer_;
  dnnl::reorder reorder_;
  bool reordered_ = false;
};

// A weight gradient produced in a primitive's layout and added (+=) into the registry's plain one;
// of padded channels, only the registry's part.
class GradientAccumulator {
 public:
  GradientAccumulator() = default;
  GradientAccumulator(const dnnl::memory::desc& produced, const dnnl::memory::desc& plain);
  // Where the primitive writes (its DNNL_ARG_DIFF_WEIGHTS).
  const dnnl::memory& produced() const { return produced_.memory; }
  // grad += what the primitive wrote, waiting for the stream.
  void add_to(const Tensor& grad);

 private:
  dnnl::memory::desc registry_;
  DnnlBuffer produced_;
  DnnlBuffer padded_;         // plain; only for padded channels
  dnnl::memory padded_part_;  // the registry's part of it
  dnnl::reorder into_padded_;
  dnnl::reorder accumulate_;
};

}  // namespace pdegen::cpu

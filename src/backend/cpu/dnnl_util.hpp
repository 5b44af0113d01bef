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
// (format_tag::any) otherwise: some of oneDNN's plain-layout kernels are reference loops a hundred
// times slower than the blocked ones, so for odd channel counts we let it pick and reorder.
dnnl::memory::desc activation_or_any(const Shape& shape);

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
// and the reorder is tiny next to the convolution).
class PrimitiveWeights {
 public:
  PrimitiveWeights() = default;
  PrimitiveWeights(const dnnl::memory::desc& plain, const dnnl::memory::desc& wanted);
  dnnl::memory get(const Tensor& weights);

 private:
  dnnl::memory::desc plain_;
  DnnlBuffer buffer_;
  dnnl::reorder reorder_;
  bool reordered_ = false;
};

// A weight gradient produced in a primitive's layout and added (+=) into the registry's plain one.
class GradientAccumulator {
 public:
  GradientAccumulator() = default;
  GradientAccumulator(const dnnl::memory::desc& produced, const dnnl::memory::desc& plain);
  // Where the primitive writes (its DNNL_ARG_DIFF_WEIGHTS).
  const dnnl::memory& produced() const { return produced_.memory; }
  // grad += what the primitive wrote, waiting for the stream.
  void add_to(const Tensor& grad);

 private:
  dnnl::memory::desc plain_;
  DnnlBuffer produced_;
  dnnl::reorder accumulate_;
};

}  // namespace pdegen::cpu

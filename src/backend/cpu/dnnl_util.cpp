// oneDNN primitive plumbing shared by the CPU layers (see dnnl_util.hpp).
#include "backend/cpu/dnnl_util.hpp"

namespace pdegen::cpu {

using dnnl::memory;

memory::dims uniform_dims(int n, int64_t value) { return memory::dims(static_cast<size_t>(n), value); }

memory::desc activation_or_any(const Shape& shape) {
  const int block = channel_block_for(shape[1]);
  if (block > 1) return desc_of(shape, block);
  return memory::desc(dims_of(shape), memory::data_type::f32, memory::format_tag::any);
}

void execute(const dnnl::primitive& primitive, const std::unordered_map<int, memory>& args) {
  DNNL_CHECK(primitive.execute(stream(), args));
  DNNL_CHECK(stream().wait());
}

dnnl::reorder make_reorder(const memory::desc& from, const memory::desc& to, bool accumulate) {
  dnnl::primitive_attr attr;
  if (accumulate) {
    dnnl::post_ops ops;
    DNNL_CHECK(ops.append_sum(1.0f));
    DNNL_CHECK(attr.set_post_ops(ops));
  }
  dnnl::reorder r;
  DNNL_CHECK(r = dnnl::reorder(dnnl::reorder::primitive_desc(engine(), from, engine(), to, attr)));
  return r;
}

memory as_layout(const Tensor& t, const memory::desc& want, DnnlBuffer& scratch) {
  memory own = memory_of(t);
  if (own.get_desc() == want) return own;
  scratch = make_buffer(want);
  reorder(own, scratch.memory);
  return scratch.memory;
}

Destination::Destination(const Tensor& t, const memory::desc& produced)
    : target_(memory_of(t)), written_(target_) {
  if (produced == target_.get_desc()) return;
  scratch_ = make_buffer(produced);
  written_ = scratch_.memory;
  copy_ = true;
}

void Destination::finish() const {
  if (copy_) reorder(written_, target_);
}

PrimitiveWeights::PrimitiveWeights(const memory::desc& plain, const memory::desc& wanted) : plain_(plain) {
  if (wanted == plain) return;
  buffer_ = make_buffer(wanted);
  reorder_ = make_reorder(plain, wanted, false);
  reordered_ = true;
}

memory PrimitiveWeights::get(const Tensor& weights) {
  memory plain(plain_, engine(), weights.raw());
  if (!reordered_) return plain;
  // The stream is in order: the primitive that reads the buffer runs after this reorder.
  DNNL_CHECK(reorder_.execute(stream(), plain, buffer_.memory));
  return buffer_.memory;
}

GradientAccumulator::GradientAccumulator(const memory::desc& produced, const memory::desc& plain)
    : plain_(plain), produced_(make_buffer(produced)), accumulate_(make_reorder(produced, plain, true)) {}

void GradientAccumulator::add_to(const Tensor& grad) {
  memory target(plain_, engine(), grad.raw());
  DNNL_CHECK(accumulate_.execute(stream(), produced_.memory, target));
  DNNL_CHECK(stream().wait());
}

}  // namespace pdegen::cpu

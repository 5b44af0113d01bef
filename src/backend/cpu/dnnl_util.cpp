// oneDNN primitive plumbing shared by the CPU layers (see dnnl_util.hpp).
#include "backend/cpu/dnnl_util.hpp"

#include <cstring>

namespace pdegen::cpu {

using dnnl::memory;

memory::dims uniform_dims(int n, int64_t value) { return memory::dims(static_cast<size_t>(n), value); }

memory::desc activation_or_any(const Shape& shape) {
  const int block = channel_block_for(shape[1]);
  if (block > 1) return desc_of(shape, block);
  return memory::desc(dims_of(shape), memory::data_type::f32, memory::format_tag::any);
}

int64_t padded_channels(int64_t channels) {
  const int64_t b = preferred_channel_block();
  return channels == 1 ? 1 : (channels + b - 1) / b * b;
}

bool runs_channels_last(int64_t in, int64_t out) {
  return preferred_channel_block() == 16 && (in % 16 == 8 || out % 16 == 8);
}

Shape with_padded_channels(const Shape& shape) {
  Shape out = shape;
  out[1] = padded_channels(shape[1]);
  return out;
}

memory view_as(const memory& m, const memory::desc& desc) {
  PDEGEN_CHECK(desc.get_size() == m.get_desc().get_size(), "a view of {} bytes on {} bytes", desc.get_size(),
               m.get_desc().get_size());
  return memory(desc, engine(), m.get_data_handle());
}

namespace {

// A zero-filled plain buffer of `dims` (a primitive's channel-padded weights or their gradient).
DnnlBuffer zero_padded(const memory::dims& dims) {
  DnnlBuffer b = make_buffer(plain_desc(Shape(dims.begin(), dims.end())));
  std::memset(b.memory.get_data_handle(), 0, b.memory.get_desc().get_size());
  return b;
}

// The leading `dims` of a plain buffer (offset 0 on every axis), as a strided view.
memory leading_part(const DnnlBuffer& padded, const memory::dims& dims) {
  const memory::desc sub = padded.memory.get_desc().submemory_desc(dims, memory::dims(dims.size(), 0));
  return memory(sub, engine(), padded.memory.get_data_handle());
}

}  // namespace

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

PrimitiveWeights::PrimitiveWeights(const memory::desc& plain, const memory::desc& wanted) : registry_(plain) {
  memory::desc source = plain;
  if (wanted.dims() != plain.dims()) {
    padded_ = zero_padded(wanted.dims());
    padded_part_ = leading_part(padded_, plain.dims());
    into_padded_ = make_reorder(plain, padded_part_.get_desc(), false);
    source = padded_.memory.get_desc();
  }
  if (wanted == source) return;
  buffer_ = make_buffer(wanted);
  reorder_ = make_reorder(source, wanted, false);
  reordered_ = true;
}

memory PrimitiveWeights::get(const Tensor& weights) {
  memory current(registry_, engine(), weights.raw());
  // The stream is in order: each reorder runs after the one before, the primitive after them.
  if (padded_.storage.defined()) {
    DNNL_CHECK(into_padded_.execute(stream(), current, padded_part_));
    current = padded_.memory;
  }
  if (!reordered_) return current;
  DNNL_CHECK(reorder_.execute(stream(), current, buffer_.memory));
  return buffer_.memory;
}

GradientAccumulator::GradientAccumulator(const memory::desc& produced, const memory::desc& plain)
    : registry_(plain), produced_(make_buffer(produced)) {
  if (produced.dims() == plain.dims()) {
    accumulate_ = make_reorder(produced, plain, true);
    return;
  }
  padded_ = zero_padded(produced.dims());
  padded_part_ = leading_part(padded_, plain.dims());
  into_padded_ = make_reorder(produced, padded_.memory.get_desc(), false);
  accumulate_ = make_reorder(padded_part_.get_desc(), plain, true);
}

void GradientAccumulator::add_to(const Tensor& grad) {
  memory target(registry_, engine(), grad.raw());
  if (padded_.storage.defined()) {
    DNNL_CHECK(into_padded_.execute(stream(), produced_.memory, padded_.memory));
    DNNL_CHECK(accumulate_.execute(stream(), padded_part_, target));
  } else {
    DNNL_CHECK(accumulate_.execute(stream(), produced_.memory, target));
  }
  DNNL_CHECK(stream().wait());
}

}  // namespace pdegen::cpu

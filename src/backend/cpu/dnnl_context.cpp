// oneDNN engine/stream and tensor <-> descriptor mapping (see dnnl_context.hpp).
#include "backend/cpu/dnnl_context.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <string>

namespace pdegen::cpu {

using tag = dnnl::memory::format_tag;

dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

dnnl::stream& stream() {
  static dnnl::stream s(engine());
  return s;
}

namespace {
// cpu_isa values are bit masks of the features they include.
bool has(dnnl::cpu_isa isa) {
  const int want = static_cast<int>(isa);
  return (static_cast<int>(dnnl::get_effective_cpu_isa()) & want) == want;
}
}  // namespace

int preferred_channel_block() {
  static const int block = [] {
    if (const char* env = std::getenv("PDEGEN_CHANNEL_BLOCK")) {
      const int b = std::atoi(env);
      PDEGEN_CHECK(b == 1 || b == 8 || b == 16, "PDEGEN_CHANNEL_BLOCK={} (expected 1, 8 or 16)", env);
      return b;
    }
    if (has(dnnl::cpu_isa::avx512_core)) return 16;
    if (has(dnnl::cpu_isa::avx2)) return 8;
    return 1;
  }();
  return block;
}

int channel_block_for(int64_t channels) {
  const int b = preferred_channel_block();
  return channels % b == 0 ? b : 1;
}

int activation_block(int64_t channels, DType dtype) {
  return dtype == DType::bf16 ? static_cast<int>(channels) : channel_block_for(channels);
}

bool has_fast_bf16() { return has(dnnl::cpu_isa::avx512_core_bf16); }

namespace {
std::atomic<ConvAlgorithm> g_conv_algorithm{ConvAlgorithm::direct};
}  // namespace

void set_conv_algorithm(ConvAlgorithm algorithm) { g_conv_algorithm = algorithm; }
ConvAlgorithm conv_algorithm() { return g_conv_algorithm; }

bool runs_winograd(int ndim, int kernel, int stride, int64_t in_channels, int64_t out_channels,
                   int64_t smallest_extent, DType dtype) {
  return conv_algorithm() == ConvAlgorithm::automatic && dtype == DType::f32 && ndim == 2 && kernel == 3 &&
         stride == 1 && std::min(in_channels, out_channels) >= 32 && smallest_extent >= winograd_min_extent;
}

Tensor widened_to_fp32(const Tensor& t) {
  if (t.dtype() == DType::f32) return t;
  return to_dtype(to_channel_block(t, channel_block_for(t.dim(1))), DType::f32);
}

Tensor narrowed_to(const Tensor& t, DType dtype, int block) {
  return to_channel_block(to_dtype(t, dtype), block);
}

dnnl::memory::dims dims_of(const Shape& s) { return dnnl::memory::dims(s.begin(), s.end()); }

dnnl::memory::data_type dnnl_type(DType t) {
  switch (t) {
    case DType::f32:
      return dnnl::memory::data_type::f32;
    case DType::f16:
      return dnnl::memory::data_type::f16;
    case DType::bf16:
      return dnnl::memory::data_type::bf16;
    case DType::f64:
      break;
  }
  PDEGEN_THROW("oneDNN has no {} type (the CPU layers take fp32 and bf16)", dtype_name(t));
}

dnnl::memory::desc desc_of(const Shape& s, int channel_block, DType dtype) {
  if (channel_block == 1) return plain_desc(s, dtype);
  const int r = s.rank();
  PDEGEN_CHECK(r == 4 || r == 5, "channel-blocked layout needs rank 4 or 5, got {}", s.str());
  tag t = tag::undef;
  if (channel_block == 16) t = r == 4 ? tag::nChw16c : tag::nCdhw16c;
  if (channel_block == 8) t = r == 4 ? tag::nChw8c : tag::nCdhw8c;
  if (t == tag::undef && channel_block == s[1]) t = r == 4 ? tag::nhwc : tag::ndhwc;
  PDEGEN_CHECK(t != tag::undef, "unsupported channel block {}", channel_block);
  return dnnl::memory::desc(dims_of(s), dnnl_type(dtype), t);
}

dnnl::memory::desc desc_of(const Tensor& t) { return desc_of(t.shape(), t.channel_block(), t.dtype()); }

dnnl::memory::desc plain_desc(const Shape& s, DType dtype) {
  dnnl::memory::dims strides(static_cast<size_t>(s.rank()));
  int64_t acc = 1;
  for (int i = s.rank() - 1; i >= 0; --i) {
    strides[static_cast<size_t>(i)] = acc;
    acc *= s[i];
  }
  return dnnl::memory::desc(dims_of(s), dnnl_type(dtype), strides);
}

dnnl::memory memory_of(const Tensor& t) {
  PDEGEN_CHECK(t.device() == Device::cpu, "oneDNN memory of a {} tensor", device_name(t.device()));
  return dnnl::memory(desc_of(t), engine(), t.raw());
}

void reorder(const dnnl::memory& src, const dnnl::memory& dst) {
  if (src.get_desc() == dst.get_desc() && src.get_data_handle() == dst.get_data_handle()) return;
  DNNL_CHECK(dnnl::reorder(src, dst).execute(stream(), const_cast<dnnl::memory&>(src),
                                             const_cast<dnnl::memory&>(dst)));
  stream().wait();
}

DnnlBuffer make_buffer(const dnnl::memory::desc& desc) {
  DnnlBuffer b;
  const auto bytes = static_cast<int64_t>(desc.get_size());
  b.storage = Tensor::empty(Shape{(bytes + 3) / 4}, DType::f32);
  b.memory = dnnl::memory(desc, engine(), b.storage.raw());
  return b;
}

}  // namespace pdegen::cpu

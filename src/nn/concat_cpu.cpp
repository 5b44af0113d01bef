// Concat on the CPU: in a layout whose channel block divides both parts, a sample of each input is
// one contiguous run of whole channel blocks, so forward and backward are strided copies of
// per-sample runs, split into chunks so that both cores stream memory.
#include <algorithm>
#include <cstring>

#include "backend/cpu/parallel.hpp"
#include "nn/concat.hpp"

namespace pdegen {

namespace {

// For each of `rows` rows: `bytes` from src + r * src_stride to dst + r * dst_stride.
void copy_rows(const char* src, int64_t src_stride, char* dst, int64_t dst_stride, int64_t bytes,
               int64_t rows) {
  constexpr int64_t chunk = int64_t{1} << 18;  // 256 KiB per work item
  const int64_t chunks = (bytes + chunk - 1) / chunk;
  cpu::parallel_for(rows * chunks, [=](int64_t i) {
    const int64_t r = i / chunks, first = i % chunks * chunk;
    std::memcpy(dst + r * dst_stride + first, src + r * src_stride + first,
                static_cast<size_t>(std::min(chunk, bytes - first)));
  });
}

// Bytes of one sample of t.
int64_t sample_bytes(const Tensor& t) {
  return t.dim(1) * t.shape().spatial() * static_cast<int64_t>(dtype_size(t.dtype()));
}

}  // namespace

Tensor Concat::forward_cpu(const Tensor& a_in, const Tensor& b_in) {
  const int block = output_block(a_in.shape(), b_in.shape());
  const Tensor a = to_channel_block(a_in, block);
  const Tensor b = to_channel_block(b_in, block);
  Tensor y = Tensor::empty(output_shape(a.shape(), b.shape()), a.dtype(), a.device(), block);
  const int64_t N = a.dim(0), a_bytes = sample_bytes(a), b_bytes = sample_bytes(b),
                y_bytes = a_bytes + b_bytes;
  char* out = static_cast<char*>(y.raw());
  copy_rows(static_cast<const char*>(a.raw()), a_bytes, out, y_bytes, a_bytes, N);
  copy_rows(static_cast<const char*>(b.raw()), b_bytes, out + a_bytes, y_bytes, b_bytes, N);

  a_shape_ = a_in.shape();
  b_shape_ = b_in.shape();
  a_block_ = a_in.channel_block();
  b_block_ = b_in.channel_block();
  out_block_ = block;
  has_forward_ = true;
  return y;
}

std::pair<Tensor, Tensor> Concat::backward_cpu(const Tensor& dy_in) {
  const Tensor dy = to_channel_block(dy_in, out_block_);
  Tensor da = Tensor::empty(a_shape_, dy.dtype(), dy.device(), out_block_);
  Tensor db = Tensor::empty(b_shape_, dy.dtype(), dy.device(), out_block_);
  const int64_t N = dy.dim(0), a_bytes = sample_bytes(da), b_bytes = sample_bytes(db),
                y_bytes = a_bytes + b_bytes;
  const char* in = static_cast<const char*>(dy.raw());
  copy_rows(in, y_bytes, static_cast<char*>(da.raw()), a_bytes, a_bytes, N);
  copy_rows(in + a_bytes, y_bytes, static_cast<char*>(db.raw()), b_bytes, b_bytes, N);
  return {to_channel_block(da, a_block_), to_channel_block(db, b_block_)};
}

}  // namespace pdegen

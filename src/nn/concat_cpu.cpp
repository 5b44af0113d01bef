// Concat on the CPU: in a layout whose channel block divides both parts, a sample of each input is
// one contiguous run of whole channel blocks; channels-last, a pixel of each input is. Forward and
// backward are strided copies of those runs, split into chunks so that both cores stream memory.
#include <algorithm>
#include <cstring>

#include "backend/cpu/parallel.hpp"
#include "nn/concat.hpp"

namespace pdegen {

namespace {

// rows x kBytes with a compile-time row size, so each row is a few vector moves instead of a
// memcpy call (channels-last rows are one pixel's channels: 32-256 bytes).
template <int64_t kBytes>
void copy_short_rows(const char* src, int64_t src_stride, char* dst, int64_t dst_stride, int64_t rows) {
  cpu::parallel_for(rows,
                    [=](int64_t r) { std::memcpy(dst + r * dst_stride, src + r * src_stride, kBytes); });
}

// For each of `rows` rows: `bytes` from src + r * src_stride to dst + r * dst_stride.
void copy_rows(const char* src, int64_t src_stride, char* dst, int64_t dst_stride, int64_t bytes,
               int64_t rows) {
  switch (bytes) {
    case 32:
      return copy_short_rows<32>(src, src_stride, dst, dst_stride, rows);
    case 64:
      return copy_short_rows<64>(src, src_stride, dst, dst_stride, rows);
    case 128:
      return copy_short_rows<128>(src, src_stride, dst, dst_stride, rows);
    case 256:
      return copy_short_rows<256>(src, src_stride, dst, dst_stride, rows);
    default:
      break;
  }
  constexpr int64_t chunk = int64_t{1} << 18;  // 256 KiB per work item
  const int64_t chunks = (bytes + chunk - 1) / chunk;
  cpu::parallel_for(rows * chunks, [=](int64_t i) {
    const int64_t r = i / chunks, first = i % chunks * chunk;
    std::memcpy(dst + r * dst_stride + first, src + r * src_stride + first,
                static_cast<size_t>(std::min(chunk, bytes - first)));
  });
}

// How the output interleaves its inputs: `rows` runs, each `a_bytes` of a then `b_bytes` of b.
struct Runs {
  int64_t rows, a_bytes, b_bytes;
};

// Channels-last (the output's block is its channel count): a run is a pixel, else a sample.
bool is_channels_last(int out_block, const Shape& a, const Shape& b) {
  return out_block > 1 && out_block == a[1] + b[1];
}

Runs runs_of(const Shape& a, const Shape& b, int out_block, DType dtype) {
  const auto esize = static_cast<int64_t>(dtype_size(dtype));
  if (is_channels_last(out_block, a, b)) return {a[0] * a.spatial(), a[1] * esize, b[1] * esize};
  return {a[0], a[1] * a.spatial() * esize, b[1] * b.spatial() * esize};
}

// The layout an input of `shape` is copied from: its own channels-last, or the output's block.
int input_block(const Shape& shape, int out_block, bool channels_last) {
  return channels_last ? static_cast<int>(shape[1]) : out_block;
}

}  // namespace

Tensor Concat::forward_cpu(const Tensor& a_in, const Tensor& b_in) {
  const int block = output_block(a_in.shape(), b_in.shape(), Device::cpu, a_in.dtype());
  const bool last = is_channels_last(block, a_in.shape(), b_in.shape());
  const Tensor a = to_channel_block(a_in, input_block(a_in.shape(), block, last));
  const Tensor b = to_channel_block(b_in, input_block(b_in.shape(), block, last));
  Tensor y = Tensor::empty(output_shape(a.shape(), b.shape()), a.dtype(), a.device(), block);
  const Runs r = runs_of(a.shape(), b.shape(), block, a.dtype());
  const int64_t y_bytes = r.a_bytes + r.b_bytes;
  char* out = static_cast<char*>(y.raw());
  copy_rows(static_cast<const char*>(a.raw()), r.a_bytes, out, y_bytes, r.a_bytes, r.rows);
  copy_rows(static_cast<const char*>(b.raw()), r.b_bytes, out + r.a_bytes, y_bytes, r.b_bytes, r.rows);

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
  const bool last = is_channels_last(out_block_, a_shape_, b_shape_);
  Tensor da = Tensor::empty(a_shape_, dy.dtype(), dy.device(), input_block(a_shape_, out_block_, last));
  Tensor db = Tensor::empty(b_shape_, dy.dtype(), dy.device(), input_block(b_shape_, out_block_, last));
  const Runs r = runs_of(a_shape_, b_shape_, out_block_, dy.dtype());
  const int64_t y_bytes = r.a_bytes + r.b_bytes;
  const char* in = static_cast<const char*>(dy.raw());
  copy_rows(in, y_bytes, static_cast<char*>(da.raw()), r.a_bytes, r.a_bytes, r.rows);
  copy_rows(in + r.a_bytes, y_bytes, static_cast<char*>(db.raw()), r.b_bytes, r.b_bytes, r.rows);
  return {to_channel_block(da, a_block_), to_channel_block(db, b_block_)};
}

}  // namespace pdegen

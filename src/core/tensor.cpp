// Tensor storage, views, layout and type conversion (host side).
#include "core/tensor.hpp"

#include <omp.h>

#include <cstring>
#include <numeric>

#include "core/allocator.hpp"
#ifdef PDEGEN_HAVE_CUDA
#include "core/device_allocator.hpp"
#endif

namespace pdegen {

std::string_view device_name(Device d) { return d == Device::cpu ? "cpu" : "cuda"; }

namespace {
// Every use of Device::cuda in a binary without the backend ends here or in PDEGEN_DISPATCH: an
// error, never a silent fall-back to the host.
[[maybe_unused]] void require_cuda_backend(Device device, const char* what) {
#ifndef PDEGEN_HAVE_CUDA
  if (device == Device::cuda)
    PDEGEN_THROW(
        "{} on device 'cuda', but this pdegen was built without the CUDA backend (configure with "
        "the 'cuda' preset or -DPDEGEN_CUDA=ON)",
        what);
#else
  (void)device;
  (void)what;
#endif
}
}  // namespace

Storage::Storage(size_t bytes, Device device) : bytes_(bytes), device_(device) {
  require_cuda_backend(device, "tensor storage");
#ifdef PDEGEN_HAVE_CUDA
  if (device == Device::cuda) {
    data_ = cuda::DeviceAllocator::instance().allocate(bytes);
    return;
  }
#endif
  data_ = CachingAllocator::host().allocate(bytes);
}

Storage::~Storage() {
#ifdef PDEGEN_HAVE_CUDA
  if (device_ == Device::cuda) {
    cuda::DeviceAllocator::instance().release(data_, bytes_);
    return;
  }
#endif
  CachingAllocator::host().release(data_, bytes_);
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device, int channel_block) {
  PDEGEN_CHECK(channel_block >= 1, "channel block {} < 1", channel_block);
  if (channel_block > 1)
    PDEGEN_CHECK(shape.rank() >= 3 && shape[1] % channel_block == 0,
                 "channel block {} needs an N,C,spatial shape with C divisible by it, got {}", channel_block,
                 shape.str());
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.device_ = device;
  t.channel_block_ = channel_block;
  const size_t bytes = static_cast<size_t>(shape.numel()) * dtype_size(dtype);
  t.storage_ = std::make_shared<Storage>(bytes, device);
  t.data_ = t.storage_->data();
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device, int channel_block) {
  Tensor t = empty(shape, dtype, device, channel_block);
  if (device == Device::cpu) {
    if (t.nbytes()) std::memset(t.data_, 0, t.nbytes());
  } else {
    t.fill(0);
  }
  return t;
}

Tensor Tensor::view(void* data, const Shape& shape, DType dtype, Device device,
                    std::shared_ptr<Storage> keep_alive, int channel_block) {
  Tensor t;
  t.storage_ = std::move(keep_alive);
  t.data_ = data;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.device_ = device;
  t.channel_block_ = channel_block;
  return t;
}

Shape Tensor::strides() const {
  PDEGEN_CHECK(is_plain(), "strides() of a channel-blocked tensor; use offset()");
  Shape s = shape_;
  int64_t acc = 1;
  for (int i = rank() - 1; i >= 0; --i) {
    s[i] = acc;
    acc *= shape_[i];
  }
  return s;
}

Tensor Tensor::slice_batch(int64_t n0, int64_t n1) const {
  PDEGEN_CHECK(rank() >= 1 && 0 <= n0 && n0 <= n1 && n1 <= shape_[0], "batch slice [{}, {}) of {}", n0, n1,
               shape_.str());
  Tensor t = *this;
  t.shape_[0] = n1 - n0;
  const size_t per_sample = static_cast<size_t>(shape_[0] ? numel() / shape_[0] : 0) * dtype_size(dtype_);
  t.data_ = static_cast<char*>(data_) + static_cast<size_t>(n0) * per_sample;
  return t;
}

Tensor Tensor::reshape(const Shape& shape) const {
  PDEGEN_CHECK(is_plain(), "reshape of a channel-blocked tensor");
  PDEGEN_CHECK(shape.numel() == numel(), "reshape {} -> {} changes the element count", shape_.str(),
               shape.str());
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape_, dtype_, device_, channel_block_);
  t.copy_from(*this);
  return t;
}

void Tensor::copy_from(const Tensor& src) {
  PDEGEN_CHECK(src.shape_ == shape_ && src.dtype_ == dtype_ && src.channel_block_ == channel_block_,
               "copy_from {} into {}", src.describe(), describe());
  if (device_ == Device::cpu && src.device_ == Device::cpu) {
    if (nbytes()) std::memcpy(data_, src.data_, nbytes());
    return;
  }
  require_cuda_backend(Device::cuda, "copy_from");
#ifdef PDEGEN_HAVE_CUDA
  cuda::copy_bytes(data_, device_ == Device::cuda, src.data_, src.device_ == Device::cuda, nbytes());
#endif
}

Tensor Tensor::to(Device device) const {
  if (device == device_) return *this;
  Tensor t = empty(shape_, dtype_, device, channel_block_);
  t.copy_from(*this);
  return t;
}

namespace {
// The bit pattern of `value` stored as one element of `dtype` (for device fills).
[[maybe_unused]] uint64_t element_bits(DType dtype, double value) {
  switch (dtype) {
    case DType::f32: {
      const float f = static_cast<float>(value);
      uint32_t b = 0;
      std::memcpy(&b, &f, sizeof b);
      return b;
    }
    case DType::f64: {
      uint64_t b = 0;
      std::memcpy(&b, &value, sizeof b);
      return b;
    }
    case DType::f16: {
      const half_t h = to_f16(static_cast<float>(value));
      uint16_t b = 0;
      std::memcpy(&b, &h, sizeof b);
      return b;
    }
    case DType::bf16: {
      const bfloat16_t h = to_bf16(static_cast<float>(value));
      uint16_t b = 0;
      std::memcpy(&b, &h, sizeof b);
      return b;
    }
  }
  return 0;
}
}  // namespace

void Tensor::fill(double value) {
  if (device_ != Device::cpu) {
    require_cuda_backend(device_, "fill");
#ifdef PDEGEN_HAVE_CUDA
    cuda::fill_bits(data_, numel(), dtype_size(dtype_), element_bits(dtype_, value));
#endif
    return;
  }
  const int64_t n = numel();
  switch (dtype_) {
    case DType::f32: {
      float* p = data<float>();
      for (int64_t i = 0; i < n; ++i) p[i] = static_cast<float>(value);
      break;
    }
    case DType::f64: {
      double* p = data<double>();
      for (int64_t i = 0; i < n; ++i) p[i] = value;
      break;
    }
    case DType::f16: {
      half_t* p = data<half_t>();
      for (int64_t i = 0; i < n; ++i) p[i] = to_f16(static_cast<float>(value));
      break;
    }
    case DType::bf16: {
      bfloat16_t* p = data<bfloat16_t>();
      for (int64_t i = 0; i < n; ++i) p[i] = to_bf16(static_cast<float>(value));
      break;
    }
  }
}

std::string Tensor::describe() const {
  return fmt::format("{} {} on {}{}", dtype_name(dtype_), shape_.str(), device_name(device_),
                     channel_block_ > 1 ? fmt::format(" (blocked by {})", channel_block_) : "");
}

namespace {
// Runs of g = gcd(both blocks) channels of one pixel are contiguous in both layouts, so a blocked
// (or channels-last) conversion copies runs pixel by pixel; with a plain side (g = 1) it walks
// channels and space element by element.
template <class T>
void reblock(const Tensor& src, Tensor& dst) {
  const T* s = src.data<T>();
  T* d = dst.data<T>();
  const int64_t N = src.dim(0), C = src.dim(1), S = src.shape().spatial();
  const int64_t g = std::gcd<int64_t>(src.channel_block(), dst.channel_block());
  if (g > 1) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < S; ++i)
        for (int64_t c = 0; c < C; c += g)
          std::memcpy(d + dst.offset(n, c, i), s + src.offset(n, c, i), static_cast<size_t>(g) * sizeof(T));
    return;
  }
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < S; ++i) d[dst.offset(n, c, i)] = s[src.offset(n, c, i)];
}
}  // namespace

Tensor to_channel_block(const Tensor& t, int channel_block) {
  if (t.channel_block() == channel_block) return t;
  PDEGEN_CHECK(t.device() == Device::cpu, "host re-blocking of a {} tensor", device_name(t.device()));
  Tensor out = Tensor::empty(t.shape(), t.dtype(), t.device(), channel_block);
  switch (t.dtype()) {
    case DType::f32:
      reblock<float>(t, out);
      break;
    case DType::f64:
      reblock<double>(t, out);
      break;
    case DType::f16:
      reblock<half_t>(t, out);
      break;
    case DType::bf16:
      reblock<bfloat16_t>(t, out);
      break;
  }
  return out;
}

namespace {
template <class T>
float load_f(const T& v) {
  if constexpr (std::is_same_v<T, half_t>)
    return from_f16(v);
  else if constexpr (std::is_same_v<T, bfloat16_t>)
    return from_bf16(v);
  else
    return static_cast<float>(v);
}
template <class T>
double load_d(const T& v) {
  if constexpr (std::is_same_v<T, double>)
    return v;
  else
    return static_cast<double>(load_f(v));
}
template <class T>
T store(double v) {
  if constexpr (std::is_same_v<T, half_t>)
    return to_f16(static_cast<float>(v));
  else if constexpr (std::is_same_v<T, bfloat16_t>)
    return to_bf16(static_cast<float>(v));
  else
    return static_cast<T>(v);
}
template <class S, class D>
void convert(const Tensor& src, Tensor& dst) {
  const S* s = src.data<S>();
  D* d = dst.data<D>();
  const int64_t n = src.numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) d[i] = store<D>(load_d(s[i]));
}
template <class S>
void convert_from(const Tensor& src, Tensor& dst) {
  switch (dst.dtype()) {
    case DType::f32:
      convert<S, float>(src, dst);
      break;
    case DType::f64:
      convert<S, double>(src, dst);
      break;
    case DType::f16:
      convert<S, half_t>(src, dst);
      break;
    case DType::bf16:
      convert<S, bfloat16_t>(src, dst);
      break;
  }
}
}  // namespace

Tensor to_dtype(const Tensor& t, DType dtype) {
  if (t.dtype() == dtype) return t;
  if (t.device() != Device::cpu) {
    // Element-wise over storage, so the layout is kept; the kernel rounds as the loops below.
    require_cuda_backend(t.device(), "to_dtype");
    Tensor out = Tensor::empty(t.shape(), dtype, t.device(), t.channel_block());
#ifdef PDEGEN_HAVE_CUDA
    cuda::convert_elements(out.raw(), dtype, t.raw(), t.dtype(), t.numel());
#endif
    return out;
  }
  Tensor out = Tensor::empty(t.shape(), dtype, t.device(), t.channel_block());
  switch (t.dtype()) {
    case DType::f32:
      convert_from<float>(t, out);
      break;
    case DType::f64:
      convert_from<double>(t, out);
      break;
    case DType::f16:
      convert_from<half_t>(t, out);
      break;
    case DType::bf16:
      convert_from<bfloat16_t>(t, out);
      break;
  }
  return out;
}

}  // namespace pdegen

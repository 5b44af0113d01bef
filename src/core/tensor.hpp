// Tensor: a shape, an element type, a device and a memory layout over shared storage.
//
// Logical order is always N, C, [D,] H, W (x fastest), as in the files pdegen writes. The physical
// layout is either plain (row-major in that order) or channel-blocked: nC[D]HW{b}c, the format in
// which oneDNN's AVX-512 convolutions run fastest (b = 16) and which the CPU backend keeps end to end.
// A blocked tensor's element (n, c, s) lives at ((n * C/b + c/b) * S + s) * b + c % b, where S is
// the spatial size; plain is the same formula with b = 1, so kernels handle both with one index.
// Blocking never pads: it is only used when b divides C.
#pragma once

#include <memory>
#include <string>

#include "core/blocked_layout.hpp"
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/shape.hpp"

namespace pdegen {

enum class Device : uint8_t { cpu, cuda };

std::string_view device_name(Device d);

// Memory owned by an allocator; released to it when the last tensor that views it goes away.
class Storage {
 public:
  Storage(size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  Device device_;
};

class Tensor {
 public:
  Tensor() = default;

  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu,
                      int channel_block = 1);
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu,
                      int channel_block = 1);
  // A tensor over memory someone else owns (a slice of a flat buffer); `keep_alive` may be null.
  static Tensor view(void* data, const Shape& shape, DType dtype, Device device,
                     std::shared_ptr<Storage> keep_alive = nullptr, int channel_block = 1);

  bool defined() const { return data_ != nullptr || shape_.numel() == 0; }
  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank(); }
  int64_t dim(int i) const { return shape_[i]; }
  int64_t numel() const { return shape_.numel(); }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }

  // 1 for plain layout, b for nC[D]HW{b}c.
  int channel_block() const { return channel_block_; }
  bool is_plain() const { return channel_block_ == 1; }
  // Row-major strides of the plain layout (elements). Blocked tensors have no per-axis strides:
  // use offset().
  Shape strides() const;

  // Element offset of (n, c, s) with s the flattened spatial index, for either layout.
  int64_t offset(int64_t n, int64_t c, int64_t s) const {
    const int64_t b = channel_block_, C = rank() > 1 ? shape_[1] : 1, S = shape_.spatial();
    return blocked_offset(n, c, s, C, S, b);
  }

  void* raw() const { return data_; }
  template <class T>
  T* data() const {
    PDEGEN_CHECK(dtype_of<T>() == dtype_, "tensor holds {}, accessed as {}", dtype_name(dtype_),
                 dtype_name(dtype_of<T>()));
    return static_cast<T*>(data_);
  }

  // Samples [n0, n1) as a view: N is the outermost axis in both layouts, so this is contiguous.
  Tensor slice_batch(int64_t n0, int64_t n1) const;
  // Same memory, other shape with the same element count (plain layout only).
  Tensor reshape(const Shape& shape) const;

  // Copies, fills and clones work on either device; copy_from also copies between host and device.
  Tensor clone() const;
  void fill(double value);
  void copy_from(const Tensor& src);  // same shape, dtype and layout; any devices
  // The same tensor (layout kept) on `device`: *this when it is already there, else a copy.
  Tensor to(Device device) const;

  std::string describe() const;

 private:
  std::shared_ptr<Storage> storage_;
  void* data_ = nullptr;
  Shape shape_;
  DType dtype_ = DType::f32;
  Device device_ = Device::cpu;
  int channel_block_ = 1;
};

// Copy into the given channel blocking (1 = plain). Returns `t` itself when it already matches.
Tensor to_channel_block(const Tensor& t, int channel_block);
inline Tensor to_plain(const Tensor& t) { return to_channel_block(t, 1); }
// Element-type conversion (fp32 <-> fp64 <-> fp16/bf16) on the tensor's device, layout kept.
Tensor to_dtype(const Tensor& t, DType dtype);

}  // namespace pdegen

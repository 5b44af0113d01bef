// Max and average pooling over 2D or 3D fields (N, C, [D,] H, W), as PyTorch's MaxPool2d/3d and
// AvgPool2d/3d with ceil_mode=False: the same kernel, stride and padding on every axis, output extent
// floor((in + 2 p - k) / s) + 1. Average pooling counts the zero padding in the average (PyTorch's
// count_include_pad=True): every window divides by k^ndim. Max pooling ignores the padding. The
// output, and dx, keep the input's layout (plain or channel-blocked) and element type (fp32; on the GPU
// also fp16/bf16, computed in fp32).
#pragma once

#include <memory>

#include "nn/layer.hpp"

namespace pdegen {

struct PoolConfig {
  int ndim = 2;     // 2 or 3 spatial dims
  int kernel = 2;   // same on every axis
  int stride = 0;   // 0 = kernel (non-overlapping windows)
  int padding = 0;  // at most kernel / 2, as PyTorch
  int effective_stride() const { return stride == 0 ? kernel : stride; }
};

// What MaxPool and AvgPool share: configuration, shapes, FLOPs and the backend plumbing.
class Pool : public Layer {
 public:
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // Max pooling keeps its argmax workspace in both modes, so backward works after an eval forward.
  Tensor forward(const Tensor& x, Mode mode) override;
  Tensor backward(const Tensor& dy) override;
  Shape output_shape(const Shape& in) const override;
  // kernel^ndim per output element, forward and backward_data alike.
  Flops flops(const Shape& in) const override;

  const PoolConfig& config() const { return config_; }

 protected:
  enum class Algorithm { max, avg };
  Pool(Algorithm algorithm, const PoolConfig& config);

 private:
  Tensor forward_cpu(const Tensor& x);
  Tensor backward_cpu(const Tensor& dy);
  Tensor forward_cuda(const Tensor& x);
  Tensor backward_cuda(const Tensor& dy);

  Algorithm algorithm_;
  PoolConfig config_;

  // oneDNN primitives for the last input shape and layout (pool_cpu.cpp), and what the last forward
  // left for backward (max pooling's workspace); rebuilt when the shape or layout changes.
  // (A deleter defined there, so this header needs neither oneDNN nor the complete type.)
  struct CpuPlan;
  struct CpuPlanDeleter {
    void operator()(CpuPlan* plan) const;
  };
  std::unique_ptr<CpuPlan, CpuPlanDeleter> cpu_plan_;
  // On the GPU (pool_cuda.cu), max pooling's argmax: each output element's position in its window
  // (an int32 per output element, stored in a 4-byte-per-element tensor), written by the last forward.
  Tensor cuda_argmax_;
  Shape in_shape_;
  int in_block_ = 1;
  DType in_dtype_ = DType::f32;  // fp32, or fp16/bf16 on the GPU: dy and dx have it too
  bool has_forward_ = false;
};

class MaxPool final : public Pool {
 public:
  explicit MaxPool(const PoolConfig& config) : Pool(Algorithm::max, config) {}
  std::string_view kind() const override { return "max_pool"; }
};

class AvgPool final : public Pool {
 public:
  explicit AvgPool(const PoolConfig& config) : Pool(Algorithm::avg, config) {}
  std::string_view kind() const override { return "avg_pool"; }
};

}  // namespace pdegen

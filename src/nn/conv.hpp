// Convolution over 2D or 3D fields (N, C, [D,] H, W) with the same kernel size, stride and padding on
// every axis, as PyTorch's Conv2d/Conv3d: y[n,o,s] = b[o] + sum_{i,k} W[o,i,k] x[n,i,s*stride-pad+k].
// The output is in the backend's activation layout (cpu::channel_block_for(out_channels) on the CPU);
// the input may be in any layout and dx comes back in the input's layout.
#pragma once

#include <memory>
#include <string>

#include "nn/conv_family.hpp"

namespace pdegen {

struct ConvConfig {
  int ndim = 2;  // 2 or 3 spatial dims
  int64_t in_channels = 0, out_channels = 0;
  int kernel = 3, stride = 1, padding = 0;  // same on every axis
  bool bias = true;
  // 1x1 "head" convolution: kernel 1, stride 1, padding 0, bias on.
  static ConvConfig pointwise(int64_t cin, int64_t cout, int ndim = 2);
};

// Forward, backward, parameters and the dx switch: see ConvFamilyLayer.
class Conv final : public ConvFamilyLayer {
 public:
  // Registers "<name>.weight" [Cout, Cin, k, k(, k)] and, with bias, "<name>.bias" [Cout], both
  // uniform on +-1/sqrt(Cin k^ndim) as PyTorch initialises them.
  Conv(std::string name, const ConvConfig& config, ParameterRegistry& registry);
  // floor((in + 2 p - k) / s) + 1 on every spatial axis.
  Shape output_shape(const Shape& in) const override;
  // 2 N Cout prod(out spatial) Cin k^ndim for forward, the same for each half of backward.
  Flops flops(const Shape& in) const override;

  const ConvConfig& config() const { return config_; }

 private:
  Tensor forward_checked(const Tensor& x, Mode mode) override;
  Tensor backward_checked(const Tensor& dy) override;
  Tensor forward_cpu(const Tensor& x, Mode mode);
  Tensor backward_cpu(const Tensor& dy);
  Tensor forward_cuda(const Tensor& x, Mode mode);
  Tensor backward_cuda(const Tensor& dy);

  ConvConfig config_;

  // oneDNN primitives for the last input shape (conv_cpu.cpp); rebuilt when the shape changes.
  // The deleter is defined there too, so this header needs no oneDNN.
  struct CpuPlan;
  struct CpuPlanDeleter {
    void operator()(CpuPlan* plan) const;
  };
  std::unique_ptr<CpuPlan, CpuPlanDeleter> cpu_plan_;
};

}  // namespace pdegen

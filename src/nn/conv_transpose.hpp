// Transposed convolution (the U-Net's learned up-sampler) over 2D or 3D fields, as PyTorch's
// ConvTranspose2d/3d: y[n,o,z*stride-pad+k] += W[i,o,k] x[n,i,z], plus b[o]; the adjoint of Conv.
// Output in the backend's activation layout (cpu::channel_block_for(out_channels) on the CPU); the
// input may be in any layout and dx comes back in the input's layout.
#pragma once

#include <memory>
#include <string>

#include "nn/conv_family.hpp"

namespace pdegen {

struct ConvTransposeConfig {
  int ndim = 2;  // 2 or 3 spatial dims
  int64_t in_channels = 0, out_channels = 0;
  int kernel = 2, stride = 2, padding = 0;  // same on every axis; the default doubles the extent
  bool bias = true;
};

// Forward, backward, parameters and the dx switch: see ConvFamilyLayer.
class ConvTranspose final : public ConvFamilyLayer {
 public:
  // Registers "<name>.weight" [Cin, Cout, k, k(, k)] (PyTorch's order) and, with bias, "<name>.bias"
  // [Cout], both uniform on +-1/sqrt(Cout k^ndim) as PyTorch initialises them (its fan_in is
  // computed from weight dim 1).
  ConvTranspose(std::string name, const ConvTransposeConfig& config, ParameterRegistry& registry);
  // (in - 1) s - 2 p + k on every spatial axis.
  Shape output_shape(const Shape& in) const override;
  // 2 N Cin prod(in spatial) Cout k^ndim for forward, the same for each half of backward.
  Flops flops(const Shape& in) const override;

  const ConvTransposeConfig& config() const { return config_; }

 private:
  Tensor forward_checked(const Tensor& x, Mode mode) override;
  Tensor backward_checked(const Tensor& dy) override;
  Tensor forward_cpu(const Tensor& x, Mode mode);
  Tensor backward_cpu(const Tensor& dy);
  Tensor forward_cuda(const Tensor& x, Mode mode);
  Tensor backward_cuda(const Tensor& dy);

  ConvTransposeConfig config_;

  // oneDNN primitives for the last input shape (conv_transpose_cpu.cpp); rebuilt when the shape
  // changes. The deleter is defined there too, so this header needs no oneDNN.
  struct CpuPlan;
  struct CpuPlanDeleter {
    void operator()(CpuPlan* plan) const;
  };
  std::unique_ptr<CpuPlan, CpuPlanDeleter> cpu_plan_;
};

}  // namespace pdegen

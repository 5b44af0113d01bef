// Nearest-neighbour 2x up-sampling over 2D or 3D fields (N, C, [D,] H, W), as PyTorch's
// Upsample(scale_factor=2, mode="nearest"): y[n,c,2z+a,2y+b,2x+e] = x[n,c,z,y,x]. Its backward sums
// the gradients of the 2^d copies of each input value. The U-Net's resize_conv up-sampler is this
// layer followed by a 3^d convolution. The output, and dx, keep the input's layout (plain or
// channel-blocked) and element type (fp32; on the GPU also fp16/bf16, summed in fp32).
#pragma once

#include "nn/layer.hpp"

namespace pdegen {

class Upsample final : public Layer {
 public:
  explicit Upsample(int ndim);  // 2 or 3 spatial dims
  std::string_view kind() const override { return "upsample_nearest"; }
  // Keeps only the input's shape and layout (backward needs no values); `mode` changes nothing.
  Tensor forward(const Tensor& x, Mode mode) override;
  Tensor backward(const Tensor& dy) override;
  // Every spatial extent doubled.
  Shape output_shape(const Shape& in) const override;
  // Forward only copies; backward adds 2^d gradients into each input value: one flop per output
  // element.
  Flops flops(const Shape& in) const override;

 private:
  Tensor forward_cpu(const Tensor& x);
  Tensor backward_cpu(const Tensor& dy);
  Tensor forward_cuda(const Tensor& x);
  Tensor backward_cuda(const Tensor& dy);

  int ndim_;
  Shape in_shape_;  // of the last forward, with its layout and element type
  int in_block_ = 1;
  DType in_dtype_ = DType::f32;  // fp32, or fp16/bf16 on the GPU: dy and dx have it too
  bool has_forward_ = false;
};

}  // namespace pdegen

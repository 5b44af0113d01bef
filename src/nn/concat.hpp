// Concatenation of two fields along the channel axis (the U-Net's skip connections):
// [N, Ca, ...] and [N, Cb, ...] -> [N, Ca + Cb, ...]. Not a Layer: it has two inputs and no
// parameters. On the CPU the output is in cpu::channel_block_for(Ca + Cb) when that block also
// divides Ca and Cb, so that a sample of each input is one contiguous run of whole channel blocks and
// concat is two copies per sample; otherwise it is plain. bf16 activations are channels-last
// (cpu::activation_block), where each pixel of each input is a contiguous run: two copies per pixel.
// Inputs in another layout are re-blocked first. On the GPU the output is plain (the CUDA backend's
// activation layout), whatever the inputs'. Backward splits dy and returns each part in the layout its input
// came in.
#pragma once

#include <utility>

#include "nn/layer.hpp"

namespace pdegen {

class Concat {
 public:
  Tensor forward(const Tensor& a, const Tensor& b);      // [N, Ca + Cb, ...]
  std::pair<Tensor, Tensor> backward(const Tensor& dy);  // (da, db) in a's and b's layouts
  Shape output_shape(const Shape& a, const Shape& b) const;
  // The layout forward returns for inputs of these shapes and type on `device` (1 = plain).
  int output_block(const Shape& a, const Shape& b, Device device = Device::cpu,
                   DType dtype = DType::f32) const;
  // Concat moves memory and computes nothing.
  Flops flops(const Shape&, const Shape&) const { return {}; }

 private:
  Tensor forward_cpu(const Tensor& a, const Tensor& b);
  std::pair<Tensor, Tensor> backward_cpu(const Tensor& dy);
  Tensor forward_cuda(const Tensor& a, const Tensor& b);
  std::pair<Tensor, Tensor> backward_cuda(const Tensor& dy);

  // What the last forward saw, for backward.
  Shape a_shape_, b_shape_;
  int a_block_ = 1, b_block_ = 1, out_block_ = 1;
  bool has_forward_ = false;
};

}  // namespace pdegen

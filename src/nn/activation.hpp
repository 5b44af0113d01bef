// Element-wise activations (ReLU, LeakyReLU, Tanh, SiLU, Sigmoid) with hand-written backward.
// Layout-agnostic: the output has the input's layout (element-wise over storage). Forward keeps (by
// reference, in either mode) only what the kind's derivative reads: x for ReLU, LeakyReLU and SiLU,
// y for Tanh and Sigmoid, nothing for the identity. fp32 on the CPU; on the GPU also fp16/bf16
// storage (computed in fp32), the output and dx in the input's type.
#pragma once

#include <string>

#include "nn/activation_kernels.hpp"
#include "nn/layer.hpp"

namespace pdegen {

// Parses "relu", "leaky_relu", "tanh", "silu", "sigmoid", "identity"; throws UserError otherwise.
ActivationKind parse_activation(const std::string& name);
std::string_view activation_name(ActivationKind k);

class Activation final : public Layer {
 public:
  explicit Activation(ActivationKind kind, float alpha = 0.01f) : kind_(kind), alpha_(alpha) {}
  std::string_view kind() const override { return activation_name(kind_); }
  Tensor forward(const Tensor& x, Mode mode) override;
  Tensor backward(const Tensor& dy) override;
  Shape output_shape(const Shape& in) const override { return in; }
  Flops flops(const Shape& in) const override;

 private:
  Tensor forward_cpu(const Tensor& x);
  Tensor backward_cpu(const Tensor& dy);
  Tensor forward_cuda(const Tensor& x);
  Tensor backward_cuda(const Tensor& dy);
  void keep_for_backward(const Tensor& x, const Tensor& y);
  void check_gradient(const Tensor& dy) const;

  ActivationKind kind_;
  float alpha_;
  Tensor x_, y_;  // undefined where the derivative does not read them
  bool has_forward_ = false;
  Shape shape_;  // of the last forward's input, and its layout and element type
  int channel_block_ = 1;
  DType dtype_ = DType::f32;
};

}  // namespace pdegen

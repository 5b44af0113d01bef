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

  // In-place variants, for a caller that holds the only reference to the tensor it passes (the
  // U-Net, for a conv's fresh output and for gradients): they save a tensor of the activation's size
  // and give bit-identical results. forward_in_place overwrites x with y and keeps that memory for
  // backward, which is only correct where the derivative can be read off y: runs_in_place() says
  // whether the kind allows it (identity, tanh, sigmoid, and ReLU / LeakyReLU with alpha >= 0, for
  // which sign(y) = sign(x)); otherwise, and on the GPU, it is forward(). backward_in_place
  // overwrites dy with dx (any kind; backward() on the GPU).
  bool runs_in_place() const;
  Tensor forward_in_place(const Tensor& x, Mode mode);
  Tensor backward_in_place(const Tensor& dy);

  // ReLU and LeakyReLU with alpha >= 0: the derivative is a function of sign(x) alone.
  bool derivative_is_sign_only() const;
  // With `on` (only where derivative_is_sign_only()), CPU forwards keep one bit per element, x > 0,
  // instead of a reference to x or y, so the output is freed as soon as its readers are done with it
  // (in the U-Net: the next conv's backward, or a skip source's concat): 1/32 of the memory, the same
  // dx bit for bit.
  void set_keeps_sign_only(bool on);
  // Drops what forward kept for backward (the U-Net calls it right after backward).
  void release_saved();

 private:
  Tensor forward_cpu(const Tensor& x);
  Tensor backward_cpu(const Tensor& dy);
  Tensor forward_in_place_cpu(const Tensor& x);
  Tensor backward_in_place_cpu(const Tensor& dy);
  Tensor forward_cuda(const Tensor& x);
  Tensor backward_cuda(const Tensor& dy);
  void keep_for_backward(const Tensor& x, const Tensor& y);
  void keep_sign_only(const Tensor& y);  // CPU: sign bits of y, dropping x_ and y_
  // dx = f'(.) dy from what forward kept; dx may be dy itself.
  void backward_cpu_into(const Tensor& dy, const Tensor& dx) const;
  void check_gradient(const Tensor& dy) const;

  ActivationKind kind_;
  float alpha_;
  Tensor x_, y_;  // undefined where the derivative does not read them
  bool keeps_sign_only_ = false;
  Tensor sign_bits_;  // with keeps_sign_only_ on the CPU: bit i % 32 of word i / 32 is x[i] > 0
  bool has_forward_ = false;
  Shape shape_;  // of the last forward's input, and its layout and element type
  int channel_block_ = 1;
  DType dtype_ = DType::f32;
};

}  // namespace pdegen

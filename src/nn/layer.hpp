// What every layer is: forward keeps what its backward needs, backward takes dL/dy, accumulates
// parameter gradients into the registry's flat buffer and returns dL/dx. Layers work on tensors of
// N, C, [D,] H, W in plain or channel-blocked layout (core/tensor.hpp); each says which layout it
// returns.
#pragma once

#include <string_view>

#include "core/dispatch.hpp"
#include "core/tensor.hpp"

namespace pdegen {

enum class Mode { train, eval };

// Floating-point operations of one call (multiply-add = 2), for GFLOP/s figures and `pdegen check`.
struct Flops {
  double forward = 0;
  double backward_data = 0;
  double backward_weights = 0;
  double backward() const { return backward_data + backward_weights; }
  double total() const { return forward + backward(); }
};

class Layer {
 public:
  virtual ~Layer() = default;
  virtual std::string_view kind() const = 0;
  virtual Tensor forward(const Tensor& x, Mode mode) = 0;
  // dL/dx for the last forward's input; parameter gradients are *accumulated* (+=), so several
  // micro-batches add up until the registry's zero_grads().
  virtual Tensor backward(const Tensor& dy) = 0;
  virtual Shape output_shape(const Shape& in) const = 0;
  virtual Flops flops(const Shape& in) const = 0;

  // The network's first layer reads the coefficient field, whose gradient nobody uses: a layer told
  // so may skip computing dL/dx (backward then returns an undefined Tensor). Parameter gradients
  // are computed either way.
  void set_needs_input_grad(bool needed) { needs_input_grad_ = needed; }
  bool needs_input_grad() const { return needs_input_grad_; }

 protected:
  bool needs_input_grad_ = true;
};

}  // namespace pdegen

// What Conv and ConvTranspose share apart from their arithmetic: the weight and bias parameters with
// PyTorch's initialisation, the checks on inputs and gradients, the input kept for backward and the
// optional skipping of dx. Each derived layer names its configuration and supplies its output shape,
// FLOP count and backend passes.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "core/parameter.hpp"
#include "nn/layer.hpp"

namespace pdegen {

// The fields ConvConfig and ConvTransposeConfig both have.
struct ConvGeometry {
  int ndim = 2;
  int64_t in_channels = 0, out_channels = 0;
  int kernel = 1, stride = 1, padding = 0;
  bool bias = true;
  template <class Config>
  static ConvGeometry of(const Config& c) {
    return {c.ndim, c.in_channels, c.out_channels, c.kernel, c.stride, c.padding, c.bias};
  }
};

class ConvFamilyLayer : public Layer {
 public:
  std::string_view kind() const final { return kind_; }
  // Train mode keeps a reference to x (not a copy) for backward, so x must not be overwritten in
  // place before then; eval mode keeps nothing.
  Tensor forward(const Tensor& x, Mode mode) final;
  // On the CPU a bf16 layer whose input or output is wider than cpu::widest_bf16_image runs in
  // fp32 (x widened, y narrowed back to bf16 channels-last; in backward dy widened, dx narrowed).
  // Accumulates dW and db into the registry (plain layout) and announces them ready before it
  // computes dx, so their reduction can overlap the data gradient. After set_needs_input_grad(false)
  // it skips dx (the backward-data pass, most of the cost when Cin is small) and returns an
  // undefined Tensor.
  Tensor backward(const Tensor& dy) final;
  // Drops the input kept for backward (the U-Net calls it right after backward, so that activations
  // are freed as backward proceeds instead of at the next forward).
  void release_saved() { x_ = Tensor(); }
  // With `on`, the CPU backward drops the kept input as soon as dW is computed, before it allocates
  // dx, which can then reuse the input's memory (a concat's output is kept by nobody else): a second
  // backward then needs a new forward. The U-Net, which runs one backward per forward, sets it.
  void set_frees_input_in_backward(bool on) { frees_input_in_backward_ = on; }

  const std::string& name() const { return name_; }
  ParameterRegistry::Id weight_id() const { return weight_id_; }
  ParameterRegistry::Id bias_id() const { return bias_id_; }  // -1 without bias
  // [Cout, Cin, k, k(, k)] for a convolution, [Cin, Cout, k, k(, k)] (PyTorch's order) transposed.
  Shape weight_shape() const;

 protected:
  // Checks the geometry and registers "<name>.weight" and, with bias, "<name>.bias" [Cout], both
  // uniform on +-1/sqrt(fan_in) as PyTorch initialises them, with PyTorch's fan_in: weight dim 1
  // times k^ndim, which is Cin for a convolution and Cout for a transposed one.
  ConvFamilyLayer(std::string_view kind, std::string name, const ConvGeometry& geometry, bool transposed,
                  ParameterRegistry& registry);

  // The backend passes, called after the checks (x: the forward input; dy: the output's shape).
  virtual Tensor forward_checked(const Tensor& x, Mode mode) = 0;
  virtual Tensor backward_checked(const Tensor& dy) = 0;

  // The GPU passes, the same for both kinds (nn/conv_family_cuda.cu): cuDNN's convolution and its
  // two adjoints, a transposed convolution running the same three with the roles swapped.
  Tensor forward_cudnn(const Tensor& x, Mode mode);
  Tensor backward_cudnn(const Tensor& dy);

  std::string_view kind_;
  std::string name_;
  ConvGeometry geometry_;
  bool transposed_;
  ParameterRegistry* registry_;
  ParameterRegistry::Id weight_id_ = -1, bias_id_ = -1;
  Tensor x_;  // the forward input as given (train mode only); dx comes back in its layout
  bool frees_input_in_backward_ = false;
  // The last forward's input type and layout, and whether it ran widened to fp32 (a bf16 layer on
  // an image wider than cpu::widest_bf16_image): dy is then widened and dx narrowed back.
  DType in_dtype_ = DType::f32;
  int in_block_ = 1;
  bool widened_ = false;

  // cuDNN descriptors and algorithms for the last GPU input shape; rebuilt when it changes. Defined
  // in nn/conv_family_cuda.cu, so this header needs no CUDA.
  struct CudaPlan;
  struct CudaPlanDeleter {
    void operator()(CudaPlan* plan) const;
  };
  std::unique_ptr<CudaPlan, CudaPlanDeleter> cuda_plan_;
};

}  // namespace pdegen

// Concat: shape checks, the output layout rule and backend dispatch.
#include "nn/concat.hpp"

#include "backend/cpu/dnnl_context.hpp"

namespace pdegen {

Shape Concat::output_shape(const Shape& a, const Shape& b) const {
  bool same = a.rank() == b.rank() && a.rank() >= 3 && a[0] == b[0];
  for (int i = 2; same && i < a.rank(); ++i) same = a[i] == b[i];
  PDEGEN_CHECK(same, "concat needs equal N and spatial extents, got {} and {}", a.str(), b.str());
  Shape out = a;
  out[1] = a[1] + b[1];
  return out;
}

int Concat::output_block(const Shape& a, const Shape& b, Device device, DType dtype) const {
  if (device == Device::cuda) return 1;
  if (dtype == DType::bf16) return cpu::activation_block(a[1] + b[1], dtype);
  const int block = cpu::channel_block_for(a[1] + b[1]);
  return a[1] % block == 0 && b[1] % block == 0 ? block : 1;
}

Tensor Concat::forward(const Tensor& a, const Tensor& b) {
  PDEGEN_CHECK(a.dtype() == b.dtype() && a.device() == b.device(), "concat of {} and {}", a.describe(),
               b.describe());
  output_shape(a.shape(), b.shape());  // checks the shapes
  return PDEGEN_DISPATCH(a.device(), forward_cpu(a, b), forward_cuda(a, b));
}

std::pair<Tensor, Tensor> Concat::backward(const Tensor& dy) {
  PDEGEN_CHECK(has_forward_, "concat backward before forward");
  PDEGEN_CHECK(dy.shape() == output_shape(a_shape_, b_shape_), "concat backward got {}, forward produced {}",
               dy.describe(), output_shape(a_shape_, b_shape_).str());
  return PDEGEN_DISPATCH(dy.device(), backward_cpu(dy), backward_cuda(dy));
}

}  // namespace pdegen

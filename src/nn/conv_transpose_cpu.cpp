// ConvTranspose on the CPU: oneDNN deconvolution primitives (nn/conv_family_cpu.hpp), built once per
// input shape and cached in the layer; the bias and its gradient are our own OpenMP loops, because
// oneDNN 2.6 adds a deconvolution bias in a separate pass five times slower than the deconvolution
// itself (5.9 ms against 1.1 ms for the U-Net's 32 -> 16 up-sampler). oneDNN's deconvolution weights
// are indexed [Cout, Cin, k...]; PyTorch's [Cin, Cout, k...] order is the same memory read with the
// first two strides swapped (no copy).
#include <dnnl.hpp>
#include <utility>
#include <vector>

#include "nn/conv_family_cpu.hpp"
#include "nn/conv_transpose.hpp"

namespace pdegen {

using DeconvPrimitives = ConvFamilyPlan<dnnl::deconvolution_forward, dnnl::deconvolution_backward_data,
                                        dnnl::deconvolution_backward_weights>;

struct ConvTranspose::CpuPlan : DeconvPrimitives {
  using DeconvPrimitives::DeconvPrimitives;
};

void ConvTranspose::CpuPlanDeleter::operator()(CpuPlan* plan) const { delete plan; }

namespace {
// oneDNN's [Cout, Cin, k...] view of PyTorch-ordered [Cin, Cout, k...] weights.
dnnl::memory::desc pytorch_weights_desc(const Shape& torch_shape) {
  dnnl::memory::dims dims = cpu::dims_of(torch_shape), strides(dims.size());
  int64_t acc = 1;
  for (size_t a = dims.size(); a-- > 0;) {
    strides[a] = acc;
    acc *= dims[a];
  }
  std::swap(dims[0], dims[1]);
  std::swap(strides[0], strides[1]);
  return dnnl::memory::desc(dims, dnnl::memory::data_type::f32, strides);
}

// Storage of an N, C, S tensor in channel block b is N*C/b runs of S*b values; value j of run r
// belongs to channel (r % (C/b))*b + j % b. The bias loops walk that storage contiguously.

// y[n,c,s] += bias[c], in fp32 arithmetic on storage type T.
template <class T>
void add_bias(Tensor& y, const float* bias) {
  const int64_t b = y.channel_block(), blocks = y.dim(1) / b, runs = y.dim(0) * blocks,
                S = y.shape().spatial();
  T* d = y.data<T>();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t r = 0; r < runs; ++r)
    for (int64_t s = 0; s < S; ++s) {
      T* v = d + (r * S + s) * b;
      const float* bb = bias + (r % blocks) * b;
      for (int64_t j = 0; j < b; ++j) v[j] = from_float<T>(to_float(v[j]) + bb[j]);
    }
}

// db[c] += sum over n, s of dy[n,c,s], summed in double per thread.
template <class T>
void accumulate_bias_grad(const Tensor& dy, float* db) {
  const int64_t C = dy.dim(1), b = dy.channel_block(), blocks = C / b, runs = dy.dim(0) * blocks,
                S = dy.shape().spatial();
  const T* g = dy.data<T>();
  std::vector<double> total(static_cast<size_t>(C), 0.0);
#pragma omp parallel
  {
    std::vector<double> part(static_cast<size_t>(C), 0.0);
#pragma omp for collapse(2) schedule(static)
    for (int64_t r = 0; r < runs; ++r)
      for (int64_t s = 0; s < S; ++s) {
        const T* v = g + (r * S + s) * b;
        double* acc = part.data() + (r % blocks) * b;
        for (int64_t j = 0; j < b; ++j) acc[j] += to_float(v[j]);
      }
#pragma omp critical
    for (int64_t c = 0; c < C; ++c) total[static_cast<size_t>(c)] += part[static_cast<size_t>(c)];
  }
  for (int64_t c = 0; c < C; ++c) db[c] += static_cast<float>(total[static_cast<size_t>(c)]);
}

}  // namespace

Tensor ConvTranspose::forward_cpu(const Tensor& x, Mode mode) {
  if (!cpu_plan_ || !cpu_plan_->runs(x))
    cpu_plan_.reset(new CpuPlan(dnnl::algorithm::deconvolution_direct, geometry_, x.shape(),
                                output_shape(x.shape()), x.dtype(), pytorch_weights_desc(weight_shape()),
                                false, fmt::format("conv_transpose '{}'", name_)));
  Tensor y = cpu_plan_->forward(x, registry_->value(weight_id_), Tensor());
  if (config_.bias) {
    const float* bias = registry_->value(bias_id_).data<float>();
    y.dtype() == DType::bf16 ? add_bias<bfloat16_t>(y, bias) : add_bias<float>(y, bias);
  }
  // The caller's tensor, not a re-laid-out copy: it is usually alive anyway (the previous layer's
  // output), so keeping it costs no memory; backward redoes the reorder if one was needed.
  x_ = mode == Mode::train ? x : Tensor();
  return y;
}

Tensor ConvTranspose::backward_cpu(const Tensor& dy) {
  CpuPlan& p = *cpu_plan_;
  cpu::DnnlBuffer dy_scratch;
  // Parameter gradients first, so the reducer can ship them while dx is computed.
  const dnnl::memory diff_dst = p.backward_weights(x_, dy, dy_scratch, registry_->grad(weight_id_), Tensor());
  registry_->grad_ready(weight_id_);
  if (config_.bias) {
    float* db = registry_->grad(bias_id_).data<float>();
    dy.dtype() == DType::bf16 ? accumulate_bias_grad<bfloat16_t>(dy, db)
                              : accumulate_bias_grad<float>(dy, db);
    registry_->grad_ready(bias_id_);
  }
  // dW was the input's last reader: dropping it here lets dx reuse its memory (the caching
  // allocator hands back a block of the same size), which matters for a concat's output.
  const int x_block = x_.channel_block();
  if (frees_input_in_backward_) x_ = Tensor();
  return needs_input_grad_ ? p.backward_data(diff_dst, registry_->value(weight_id_), x_block) : Tensor();
}

}  // namespace pdegen

// Conv and ConvTranspose on the GPU: cuDNN's convolution and its two adjoints, with descriptors and
// algorithms chosen once per input shape and cached in the layer. Activations are plain NCHW /
// NCDHW fp32 on the device; weights are the registry's canonical ones, read in place (cuDNN's
// filter layout [K, C, k...] is PyTorch's [Cout, Cin, k...] for a convolution and [Cin, Cout, k...]
// for a transposed one).
//
// A transposed convolution is the adjoint of the convolution that maps its output shape back to its
// input shape, so one plan serves both: in cuDNN's terms the plan's "conv input" is the layer input
// of a Conv and the layer output of a ConvTranspose, and
//   Conv:          forward = ConvolutionForward,      dx = BackwardData
//   ConvTranspose: forward = BackwardData,            dx = ConvolutionForward
//   both:          dW += BackwardFilter(conv input, conv output gradient), db += BackwardBias(dy).
// Algorithms come from cuDNN's heuristics (_v7), the first one that fits the workspace limit and the
// math mode of cuda::conv_math(); the backward ones are chosen on first use.
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_context.hpp"
#include "nn/conv_family.hpp"

namespace pdegen {

namespace {

const float one = 1.0f, zero = 0.0f;

std::vector<int> int_dims(const Shape& s) {
  std::vector<int> d;
  for (int i = 0; i < s.rank(); ++i) {
    PDEGEN_CHECK(s[i] > 0 && s[i] <= 0x7fffffff, "cuDNN extent {} of {}", s[i], s.str());
    d.push_back(static_cast<int>(s[i]));
  }
  return d;
}

// Plain (packed, x fastest) fp32 descriptor of an N, C, [D,] H, W shape.
void set_plain(cudnnTensorDescriptor_t desc, const Shape& shape) {
  const std::vector<int> dims = int_dims(shape);
  std::vector<int> strides(dims.size());
  int64_t acc = 1;
  for (size_t a = dims.size(); a-- > 0;) {
    PDEGEN_CHECK(acc <= 0x7fffffff, "tensor {} too large for a cuDNN descriptor", shape.str());
    strides[a] = static_cast<int>(acc);
    acc *= dims[a];
  }
  CUDNN_CHECK(cudnnSetTensorNdDescriptor(desc, CUDNN_DATA_FLOAT, static_cast<int>(dims.size()), dims.data(),
                                         strides.data()));
}

bool math_allowed(cudnnMathType_t m, cuda::ConvMath want) {
  switch (want) {
    case cuda::ConvMath::fp32:
      return m == CUDNN_DEFAULT_MATH || m == CUDNN_FMA_MATH;
    case cuda::ConvMath::tf32:
      return m != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
    case cuda::ConvMath::fp16_conversion:
      return true;
  }
  return false;
}

// fp32 pins FMA kernels: CUDNN_DEFAULT_MATH lets sm_80+ use TF32 tensor cores on fp32 data.
cudnnMathType_t math_to_set(cudnnMathType_t m, cuda::ConvMath want) {
  return want == cuda::ConvMath::fp32 ? CUDNN_FMA_MATH : m;
}

const char* math_name(cudnnMathType_t m) {
  switch (m) {
    case CUDNN_DEFAULT_MATH:
      return "default";
    case CUDNN_TENSOR_OP_MATH:
      return "tensor-op";
    case CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION:
      return "tensor-op+conversion";
    case CUDNN_FMA_MATH:
      return "fma";
  }
  return "?";
}

// One cuDNN pass (forward, backward data or backward filter): its own convolution descriptor, so
// each pass carries the math type of the algorithm chosen for it.
template <class Algo>
struct Pass {
  cudnnConvolutionDescriptor_t conv = nullptr;
  bool chosen = false;
  Algo algo{};
  size_t workspace = 0;
};

// The first heuristic candidate whose math mode is allowed and whose workspace fits, with the
// descriptor's math type set for it. `query` asks cuDNN for the workspace of (algo) and returns its
// status (NOT_SUPPORTED for a combination that does not exist).
template <class Perf, class Algo, class Query>
void choose(Pass<Algo>& pass, const std::vector<Perf>& candidates, int returned, Query query,
            const std::string& what) {
  const cuda::ConvMath want = cuda::conv_math();
  const size_t limit = cuda::conv_workspace_limit();
  std::string tried;
  for (int i = 0; i < returned; ++i) {
    const Perf& p = candidates[static_cast<size_t>(i)];
    if (p.status != CUDNN_STATUS_SUCCESS || !math_allowed(p.mathType, want)) continue;
    const cudnnMathType_t math = math_to_set(p.mathType, want);
    CUDNN_CHECK(cudnnSetConvolutionMathType(pass.conv, math));
    size_t bytes = 0;
    if (query(p.algo, &bytes) != CUDNN_STATUS_SUCCESS) continue;
    tried += fmt::format(" {}:{}:{}MiB", static_cast<int>(p.algo), math_name(math), bytes >> 20);
    if (bytes > limit) continue;
    pass.algo = p.algo;
    pass.workspace = bytes;
    pass.chosen = true;
    return;
  }
  PDEGEN_THROW("{}: no cuDNN algorithm within the {} MiB workspace limit and the math mode (tried{})", what,
               limit >> 20, tried.empty() ? " none" : tried);
}

// Scratch for one cuDNN call from the caching device allocator (stream-ordered, so it may be
// released right after the call is queued).
Tensor workspace(size_t bytes) {
  return Tensor::empty(Shape{static_cast<int64_t>((bytes + 3) / 4)}, DType::f32, Device::cuda);
}

}  // namespace

struct ConvFamilyLayer::CudaPlan {
  CudaPlan(const ConvGeometry& g, bool is_transposed, const Shape& in, const Shape& out, const Shape& weight,
           std::string what)
      : in_shape(in), transposed(is_transposed), label(std::move(what)) {
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&conv_in));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&conv_out));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&bias));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&filter));
    set_plain(conv_in, transposed ? out : in);
    set_plain(conv_out, transposed ? in : out);
    Shape bias_shape{1, g.out_channels};
    for (int d = 0; d < g.ndim; ++d) bias_shape.push_back(1);
    set_plain(bias, bias_shape);
    const std::vector<int> w = int_dims(weight);
    CUDNN_CHECK(cudnnSetFilterNdDescriptor(filter, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW,
                                           static_cast<int>(w.size()), w.data()));
    const std::vector<int> pad(static_cast<size_t>(g.ndim), g.padding),
        stride(static_cast<size_t>(g.ndim), g.stride), dilation(static_cast<size_t>(g.ndim), 1);
    for (cudnnConvolutionDescriptor_t* c : {&fwd.conv, &bwd_data.conv, &bwd_filter.conv}) {
      CUDNN_CHECK(cudnnCreateConvolutionDescriptor(c));
      CUDNN_CHECK(cudnnSetConvolutionNdDescriptor(*c, g.ndim, pad.data(), stride.data(), dilation.data(),
                                                  CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    }
    // cuDNN's own output extent must be the shape the layer promises (floor division, as PyTorch).
    const Shape& cin = transposed ? out : in;
    const Shape& cout = transposed ? in : out;
    std::vector<int> expected(static_cast<size_t>(cin.rank()));
    CUDNN_CHECK(
        cudnnGetConvolutionNdForwardOutputDim(fwd.conv, conv_in, filter, cin.rank(), expected.data()));
    PDEGEN_CHECK(expected == int_dims(cout), "{}: cuDNN's convolution of {} gives another shape than {}",
                 label, cin.str(), cout.str());
  }

  ~CudaPlan() {
    // Destroy errors cannot be reported from a destructor; the descriptors are host objects.
    for (cudnnConvolutionDescriptor_t c : {fwd.conv, bwd_data.conv, bwd_filter.conv})
      if (c) cudnnDestroyConvolutionDescriptor(c);
    if (filter) cudnnDestroyFilterDescriptor(filter);
    for (cudnnTensorDescriptor_t t : {conv_in, conv_out, bias})
      if (t) cudnnDestroyTensorDescriptor(t);
  }
  CudaPlan(const CudaPlan&) = delete;
  CudaPlan& operator=(const CudaPlan&) = delete;

  // The layer output's descriptor (for the bias).
  cudnnTensorDescriptor_t layer_out() const { return transposed ? conv_in : conv_out; }

  // conv_out = conv(conv_in, W), overwritten.
  void convolution(const float* in, const float* w, float* out) {
    cudnnHandle_t h = cuda::cudnn();
    if (!fwd.chosen) {
      std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(CUDNN_CONVOLUTION_FWD_ALGO_COUNT);
      int returned = 0;
      CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(
          h, conv_in, filter, fwd.conv, conv_out, static_cast<int>(perf.size()), &returned, perf.data()));
      choose(
          fwd, perf, returned,
          [&](cudnnConvolutionFwdAlgo_t a, size_t* bytes) {
            return cudnnGetConvolutionForwardWorkspaceSize(h, conv_in, filter, fwd.conv, conv_out, a, bytes);
          },
          label + " convolution");
    }
    const Tensor ws = workspace(fwd.workspace);
    CUDNN_CHECK(cudnnConvolutionForward(h, &one, conv_in, in, filter, w, fwd.conv, fwd.algo, ws.raw(),
                                        fwd.workspace, &zero, conv_out, out));
  }

  // conv_in = conv^T(conv_out, W), overwritten.
  void adjoint(const float* out, const float* w, float* in) {
    cudnnHandle_t h = cuda::cudnn();
    if (!bwd_data.chosen) {
      std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT);
      int returned = 0;
      CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, filter, conv_out, bwd_data.conv, conv_in,
                                                              static_cast<int>(perf.size()), &returned,
                                                              perf.data()));
      choose(
          bwd_data, perf, returned,
          [&](cudnnConvolutionBwdDataAlgo_t a, size_t* bytes) {
            return cudnnGetConvolutionBackwardDataWorkspaceSize(h, filter, conv_out, bwd_data.conv, conv_in,
                                                                a, bytes);
          },
          label + " adjoint convolution");
    }
    const Tensor ws = workspace(bwd_data.workspace);
    CUDNN_CHECK(cudnnConvolutionBackwardData(h, &one, filter, w, conv_out, out, bwd_data.conv, bwd_data.algo,
                                             ws.raw(), bwd_data.workspace, &zero, conv_in, in));
  }

  // dW += filter gradient of conv(conv_in, W) against d(conv_out).
  void accumulate_filter_grad(const float* in, const float* d_out, float* dw) {
    cudnnHandle_t h = cuda::cudnn();
    if (!bwd_filter.chosen) {
      std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT);
      int returned = 0;
      CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, conv_in, conv_out, bwd_filter.conv, filter,
                                                                static_cast<int>(perf.size()), &returned,
                                                                perf.data()));
      choose(
          bwd_filter, perf, returned,
          [&](cudnnConvolutionBwdFilterAlgo_t a, size_t* bytes) {
            return cudnnGetConvolutionBackwardFilterWorkspaceSize(h, conv_in, conv_out, bwd_filter.conv,
                                                                  filter, a, bytes);
          },
          label + " filter gradient");
    }
    const Tensor ws = workspace(bwd_filter.workspace);
    CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, &one, conv_in, in, conv_out, d_out, bwd_filter.conv,
                                               bwd_filter.algo, ws.raw(), bwd_filter.workspace, &one, filter,
                                               dw));
  }

  Shape in_shape;
  bool transposed;
  std::string label;
  cudnnTensorDescriptor_t conv_in = nullptr, conv_out = nullptr, bias = nullptr;
  cudnnFilterDescriptor_t filter = nullptr;
  Pass<cudnnConvolutionFwdAlgo_t> fwd;
  Pass<cudnnConvolutionBwdDataAlgo_t> bwd_data;
  Pass<cudnnConvolutionBwdFilterAlgo_t> bwd_filter;
};

void ConvFamilyLayer::CudaPlanDeleter::operator()(CudaPlan* plan) const { delete plan; }

namespace {
void check_on_device(const Tensor& t, const char* what, std::string_view kind, const std::string& name) {
  PDEGEN_CHECK(t.device() == Device::cuda && t.is_plain(),
               "{} '{}' on the GPU needs a plain device {}, got {}", kind, name, what, t.describe());
}
}  // namespace

Tensor ConvFamilyLayer::forward_cudnn(const Tensor& x, Mode mode) {
  check_on_device(x, "input", kind_, name_);
  const Tensor& w = registry_->value(weight_id_);
  check_on_device(w, "weight (finalize the registry on Device::cuda)", kind_, name_);
  const Shape out = output_shape(x.shape());
  if (!cuda_plan_ || cuda_plan_->in_shape != x.shape())
    cuda_plan_.reset(new CudaPlan(geometry_, transposed_, x.shape(), out, weight_shape(),
                                  fmt::format("{} '{}' {}", kind_, name_, x.shape().str())));
  CudaPlan& p = *cuda_plan_;
  Tensor y = Tensor::empty(out, DType::f32, Device::cuda);
  if (transposed_)
    p.adjoint(x.data<float>(), w.data<float>(), y.data<float>());
  else
    p.convolution(x.data<float>(), w.data<float>(), y.data<float>());
  if (geometry_.bias)
    CUDNN_CHECK(cudnnAddTensor(cuda::cudnn(), &one, p.bias, registry_->value(bias_id_).data<float>(), &one,
                               p.layer_out(), y.data<float>()));
  x_ = mode == Mode::train ? x : Tensor();
  return y;
}

Tensor ConvFamilyLayer::backward_cudnn(const Tensor& dy) {
  check_on_device(dy, "output gradient", kind_, name_);
  CudaPlan& p = *cuda_plan_;
  PDEGEN_CHECK(p.in_shape == x_.shape(), "{} '{}': GPU plan for {} but the kept input is {}", kind_, name_,
               p.in_shape.str(), x_.shape().str());
  const float* x = x_.data<float>();
  const float* g = dy.data<float>();
  // Parameter gradients first, so their reduction can overlap dx. "Ready" means queued on the
  // compute stream: a reducer on another stream orders itself after it with an event.
  p.accumulate_filter_grad(transposed_ ? g : x, transposed_ ? x : g,
                           registry_->grad(weight_id_).data<float>());
  registry_->grad_ready(weight_id_);
  if (geometry_.bias) {
    CUDNN_CHECK(cudnnConvolutionBackwardBias(cuda::cudnn(), &one, p.layer_out(), g, &one, p.bias,
                                             registry_->grad(bias_id_).data<float>()));
    registry_->grad_ready(bias_id_);
  }
  if (!needs_input_grad_) return Tensor();
  Tensor dx = Tensor::empty(x_.shape(), DType::f32, Device::cuda);
  if (transposed_)
    p.convolution(g, registry_->value(weight_id_).data<float>(), dx.data<float>());
  else
    p.adjoint(g, registry_->value(weight_id_).data<float>(), dx.data<float>());
  return dx;
}

}  // namespace pdegen

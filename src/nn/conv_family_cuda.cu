// Conv and ConvTranspose on the GPU: cuDNN's convolution and its two adjoints, with descriptors and
// algorithms chosen once per input shape and element type and cached in the layer. Activations are
// plain NCHW / NCDHW on the device, fp32 or (mixed precision) fp16/bf16; fp32 weights are the
// registry's canonical ones, read in place (cuDNN's filter layout [K, C, k...] is PyTorch's
// [Cout, Cin, k...] for a convolution and [Cin, Cout, k...] for a transposed one).
//
// 16-bit activations: cuDNN wants the filter in the data's type, so each forward rounds the fp32
// registry weights into a 16-bit copy kept in the plan (the weights change every step; backward
// uses the copy of its forward). Products accumulate in fp32 (compute type CUDNN_DATA_FLOAT) on
// tensor cores (CUDNN_TENSOR_OP_MATH). The filter gradient comes out of cuDNN in 16 bits into
// scratch (beta = 0) and is added in fp32 to the registry's fp32 gradient; the fp32 bias is added
// and its gradient reduced by our own kernels, which read 16 bits and compute in fp32.
//
// A transposed convolution is the adjoint of the convolution that maps its output shape back to its
// input shape, so one plan serves both: in cuDNN's terms the plan's "conv input" is the layer input
// of a Conv and the layer output of a ConvTranspose, and
//   Conv:          forward = ConvolutionForward,      dx = BackwardData
//   ConvTranspose: forward = BackwardData,            dx = ConvolutionForward
//   both:          dW += BackwardFilter(conv input, conv output gradient), db += sum of dy over N, S.
// The bias gradient is our own two-stage reduction: deterministic, and far faster than cuDNN's
// BackwardBias, which took 0.85 ms of a 3.1 ms backward for 16 x 32 x 256^2 on an H100.
// Algorithms are chosen on each pass's first call: timed by cudnnFind*Ex (cuda::conv_algo_search(),
// the default) or ranked by cuDNN's heuristics (_v7); the fastest deterministic one that fits the
// workspace limit and the math mode of cuda::conv_math() wins (see choose()).
#include <algorithm>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_context.hpp"
#include "core/dtype.hpp"
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

cudnnDataType_t cudnn_type(DType t) {
  switch (t) {
    case DType::f32:
      return CUDNN_DATA_FLOAT;
    case DType::f16:
      return CUDNN_DATA_HALF;
    case DType::bf16:
      return CUDNN_DATA_BFLOAT16;
    case DType::f64:
      break;
  }
  PDEGEN_THROW("cuDNN convolutions take fp32, fp16 or bf16 data, not {}", dtype_name(t));
}

// Plain (packed, x fastest) descriptor of an N, C, [D,] H, W shape.
void set_plain(cudnnTensorDescriptor_t desc, const Shape& shape, cudnnDataType_t type) {
  const std::vector<int> dims = int_dims(shape);
  std::vector<int> strides(dims.size());
  int64_t acc = 1;
  for (size_t a = dims.size(); a-- > 0;) {
    PDEGEN_CHECK(acc <= 0x7fffffff, "tensor {} too large for a cuDNN descriptor", shape.str());
    strides[a] = static_cast<int>(acc);
    acc *= dims[a];
  }
  CUDNN_CHECK(
      cudnnSetTensorNdDescriptor(desc, type, static_cast<int>(dims.size()), dims.data(), strides.data()));
}

// cuda::conv_math() governs fp32 data only. 16-bit data already is in a tensor-core type: any math
// but ALLOW_CONVERSION (which may round bf16 to fp16, losing its range) is allowed.
bool math_allowed(cudnnMathType_t m, cuda::ConvMath want, DType data) {
  if (data != DType::f32) return m != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
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

// fp32 pins FMA kernels: CUDNN_DEFAULT_MATH lets sm_80+ use TF32 tensor cores on fp32 data. cuDNN
// picks its kernels by algorithm and math type together, so otherwise a candidate runs with the
// math type it was found (or ranked) with.
cudnnMathType_t math_to_set(cudnnMathType_t m, cuda::ConvMath want, DType data) {
  return data == DType::f32 && want == cuda::ConvMath::fp32 ? CUDNN_FMA_MATH : m;
}

// What the user can do where cuDNN has no kernel for 16-bit data.
std::string reduced_precision_hint(DType data) {
  if (data == DType::bf16)
    return "; cuDNN's bf16 convolutions need compute capability 8.0 (A100) or newer: use fp16 or fp32 here";
  if (data == DType::f16) return "; use fp32 on this GPU";
  return "";
}

// The device in error messages; describing it must not hide the error being reported.
std::string device_for_errors() {
  try {
    return cuda::describe_device();
  } catch (const std::exception& e) {
    return fmt::format("the current GPU ({})", e.what());
  }
}

// A failed algorithm search (cuDNN answers NOT_SUPPORTED where it has no kernel for a data type on
// this device, bf16 before sm_80): a clear error naming the layer, the data type and the device.
void check_search(cudnnStatus_t status, const char* call, const std::string& what, DType data) {
  if (status == CUDNN_STATUS_SUCCESS) return;
  PDEGEN_THROW("{}: cuDNN's {} failed for {} data on {}: {} (status {}){}", what, call, dtype_name(data),
               device_for_errors(), cudnnGetErrorString(status), static_cast<int>(status),
               reduced_precision_hint(data));
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

// Transform-based algorithms (FFT, Winograd) round in the transformed domain, beyond what a plain
// fp32 sum of products does: fp32 mode, the exact reference, leaves them out.
bool transform_based(cudnnConvolutionFwdAlgo_t a) {
  return a == CUDNN_CONVOLUTION_FWD_ALGO_FFT || a == CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING ||
         a == CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD || a == CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED;
}
bool transform_based(cudnnConvolutionBwdDataAlgo_t a) {
  return a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT || a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING ||
         a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD ||
         a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED;
}
bool transform_based(cudnnConvolutionBwdFilterAlgo_t a) {
  return a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT || a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING ||
         a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED;
}

// The first candidate (fastest first, timed or ranked) whose math mode is allowed and whose
// workspace fits, with the descriptor's math type set for it. Deterministic algorithms are preferred
// over the others (atomics-based ones make two identical backward passes differ in the last bits,
// and replicas' reductions irreproducible); a non-deterministic one is taken only when none fits.
// `query` asks cuDNN for the workspace of (algo) and returns its status (NOT_SUPPORTED for a
// combination that does not exist).
template <class Perf, class Algo, class Query>
void choose(Pass<Algo>& pass, const std::vector<Perf>& candidates, int returned, Query query,
            const std::string& what, DType data) {
  const cuda::ConvMath want = cuda::conv_math();
  const size_t limit = cuda::conv_workspace_limit();
  std::string tried;
  for (const bool deterministic_only : {true, false})
    for (int i = 0; i < returned; ++i) {
      const Perf& p = candidates[static_cast<size_t>(i)];
      if (p.status != CUDNN_STATUS_SUCCESS || !math_allowed(p.mathType, want, data)) continue;
      if (deterministic_only && p.determinism != CUDNN_DETERMINISTIC) continue;
      if (data == DType::f32 && want == cuda::ConvMath::fp32 && transform_based(p.algo)) continue;
      const cudnnMathType_t math = math_to_set(p.mathType, want, data);
      CUDNN_CHECK(cudnnSetConvolutionMathType(pass.conv, math));
      size_t bytes = 0;
      if (query(p.algo, &bytes) != CUDNN_STATUS_SUCCESS) continue;
      if (deterministic_only)
        tried += fmt::format(" {}:{}:{}MiB", static_cast<int>(p.algo), math_name(math), bytes >> 20);
      if (bytes > limit) continue;
      pass.algo = p.algo;
      pass.workspace = bytes;
      pass.chosen = true;
      return;
    }
  if (data == DType::f32)
    PDEGEN_THROW("{}: no cuDNN algorithm within the {} MiB workspace limit and the math mode (tried{})", what,
                 limit >> 20, tried.empty() ? " none" : tried);
  PDEGEN_THROW("{}: no cuDNN algorithm for {} data on {} within the {} MiB workspace limit (tried{}){}", what,
               dtype_name(data), device_for_errors(), limit >> 20, tried.empty() ? " none" : tried,
               reduced_precision_hint(data));
}

// db[c] += sum over n, s of dy[n, c, s] for plain dy of any storage type, summed in fp32: stage one
// sums segments of each (n, c) row (one block each), stage two adds a channel's partials in a fixed
// order, so the result does not depend on scheduling.
constexpr unsigned bias_threads = 256;
constexpr int64_t bias_segment = 16384;

template <class T>
__global__ void bias_grad_partials(const T* __restrict__ dy, int64_t S, int64_t segments,
                                   float* __restrict__ partial) {
  const int64_t block = blockIdx.x, row = block / segments, begin = (block % segments) * bias_segment;
  const int64_t end = begin + bias_segment < S ? begin + bias_segment : S;
  const T* p = dy + row * S;
  float acc = 0;
  for (int64_t i = begin + threadIdx.x; i < end; i += bias_threads) acc += to_float(p[i]);
  for (int offset = 16; offset > 0; offset /= 2) acc += __shfl_down_sync(0xffffffffu, acc, offset);
  __shared__ float warp_sums[bias_threads / 32];
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    float total = 0;
    for (unsigned w = 0; w < bias_threads / 32; ++w) total += warp_sums[w];
    partial[block] = total;
  }
}

__global__ void bias_grad_finish(const float* __restrict__ partial, int64_t N, int64_t C, int64_t segments,
                                 float* __restrict__ db) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  double total = 0;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t seg = 0; seg < segments; ++seg) total += partial[(n * C + c) * segments + seg];
  db[c] += static_cast<float>(total);
}

// The element-wise kernels of the 16-bit path: grid-stride loops over n elements, fp32 arithmetic.
unsigned grid_for(int64_t n) { return std::min(cuda::blocks_for(n), 65535u); }

// w16[i] = w[i] rounded to T (the filter copy cuDNN reads with 16-bit data).
template <class T>
__global__ void round_weights(const float* __restrict__ w, T* __restrict__ w16, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    w16[i] = from_float<T>(w[i]);
}

// dw[i] += d16[i] in fp32: cuDNN's 16-bit filter gradient into the registry's fp32 one.
template <class T>
__global__ void add_filter_grad(const T* __restrict__ d16, float* __restrict__ dw, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    dw[i] += to_float(d16[i]);
}

// y[n, c, s] += b[c] for plain y of N x C x S elements (n in all), added in fp32 and rounded once.
template <class T>
__global__ void add_bias(T* __restrict__ y, const float* __restrict__ b, int64_t C, int64_t S, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    y[i] = from_float<T>(to_float(y[i]) + b[(i / S) % C]);
}

// Scratch for one cuDNN call from the caching device allocator (stream-ordered, so it may be
// released right after the call is queued).
Tensor workspace(size_t bytes) {
  return Tensor::empty(Shape{static_cast<int64_t>((bytes + 3) / 4)}, DType::f32, Device::cuda);
}

void accumulate_bias_grad(const Tensor& dy, float* db) {
  const int64_t N = dy.dim(0), C = dy.dim(1), S = dy.shape().spatial();
  const int64_t segments = (S + bias_segment - 1) / bias_segment, blocks = N * C * segments;
  if (blocks == 0) return;
  const Tensor partial = Tensor::empty(Shape{blocks}, DType::f32, Device::cuda);
  with_storage_type(dy.dtype(), [&](auto tag) {
    using T = decltype(tag);
    bias_grad_partials<T><<<static_cast<unsigned>(blocks), bias_threads, 0, cuda::stream()>>>(
        dy.data<T>(), S, segments, partial.data<float>());
  });
  CUDA_CHECK_LAUNCH();
  bias_grad_finish<<<cuda::blocks_for(C, 64), 64, 0, cuda::stream()>>>(partial.data<float>(), N, C, segments,
                                                                       db);
  CUDA_CHECK_LAUNCH();
}

// y += bias (fp32, one per channel) for a plain 16-bit y.
void add_bias_reduced(Tensor& y, const float* bias) {
  const int64_t n = y.numel(), C = y.dim(1), S = y.shape().spatial();
  if (n == 0) return;
  with_storage_type(y.dtype(), [&](auto tag) {
    using T = decltype(tag);
    add_bias<T><<<grid_for(n), 256, 0, cuda::stream()>>>(y.data<T>(), bias, C, S, n);
  });
  CUDA_CHECK_LAUNCH();
}

// dw += d16 (a 16-bit filter gradient) in fp32.
void add_filter_grad_reduced(const Tensor& d16, float* dw) {
  const int64_t n = d16.numel();
  if (n == 0) return;
  with_storage_type(d16.dtype(), [&](auto tag) {
    using T = decltype(tag);
    add_filter_grad<T><<<grid_for(n), 256, 0, cuda::stream()>>>(d16.data<T>(), dw, n);
  });
  CUDA_CHECK_LAUNCH();
}

}  // namespace

struct ConvFamilyLayer::CudaPlan {
  CudaPlan(const ConvGeometry& g, bool is_transposed, const Shape& in, const Shape& out, const Shape& weight,
           DType data, std::string what)
      : in_shape(in), dtype(data), transposed(is_transposed), label(std::move(what)) {
    const cudnnDataType_t type = cudnn_type(dtype);
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&conv_in));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&conv_out));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&bias));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&filter));
    set_plain(conv_in, transposed ? out : in, type);
    set_plain(conv_out, transposed ? in : out, type);
    // The fp32 bias of cudnnAddTensor, fp32 data only (16-bit outputs get add_bias).
    Shape bias_shape{1, g.out_channels};
    for (int d = 0; d < g.ndim; ++d) bias_shape.push_back(1);
    set_plain(bias, bias_shape, CUDNN_DATA_FLOAT);
    const std::vector<int> w = int_dims(weight);
    filter_bytes = static_cast<size_t>(weight.numel()) * dtype_size(dtype);
    CUDNN_CHECK(
        cudnnSetFilterNdDescriptor(filter, type, CUDNN_TENSOR_NCHW, static_cast<int>(w.size()), w.data()));
    if (dtype != DType::f32) weight16 = Tensor::empty(weight, dtype, Device::cuda);
    const std::vector<int> pad(static_cast<size_t>(g.ndim), g.padding),
        stride(static_cast<size_t>(g.ndim), g.stride), dilation(static_cast<size_t>(g.ndim), 1);
    for (cudnnConvolutionDescriptor_t* c : {&fwd.conv, &bwd_data.conv, &bwd_filter.conv}) {
      CUDNN_CHECK(cudnnCreateConvolutionDescriptor(c));
      // Compute type fp32 for every data type: 16-bit products accumulate in fp32.
      CUDNN_CHECK(cudnnSetConvolutionNdDescriptor(*c, g.ndim, pad.data(), stride.data(), dilation.data(),
                                                  CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
      // 16-bit data: the search considers tensor-core algorithms (PyTorch does the same for fp16).
      if (dtype != DType::f32) CUDNN_CHECK(cudnnSetConvolutionMathType(*c, CUDNN_TENSOR_OP_MATH));
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

  // The filter cuDNN reads in this forward and the following backward: the registry's fp32 weights
  // themselves for fp32 data, else weight16 refreshed from them.
  const void* filter_for_forward(const Tensor& w32) {
    if (dtype == DType::f32) return w32.raw();
    const int64_t n = w32.numel();
    with_storage_type(dtype, [&](auto tag) {
      using T = decltype(tag);
      round_weights<T><<<grid_for(n), 256, 0, cuda::stream()>>>(w32.data<float>(), weight16.data<T>(), n);
    });
    CUDA_CHECK_LAUNCH();
    return weight16.raw();
  }

  // conv_out = conv(conv_in, W), overwritten.
  void convolution(const void* in, const void* w, void* out) {
    cudnnHandle_t h = cuda::cudnn();
    if (!fwd.chosen) {
      std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(CUDNN_CONVOLUTION_FWD_ALGO_COUNT);
      int returned = 0;
      if (cuda::conv_algo_search()) {
        // Times each algorithm writing `out`, which the call below overwrites anyway.
        const Tensor ws = workspace(cuda::conv_workspace_limit());
        check_search(cudnnFindConvolutionForwardAlgorithmEx(
                         h, conv_in, in, filter, w, fwd.conv, conv_out, out, static_cast<int>(perf.size()),
                         &returned, perf.data(), ws.raw(), cuda::conv_workspace_limit()),
                     "cudnnFindConvolutionForwardAlgorithmEx", label, dtype);
      } else {
        check_search(
            cudnnGetConvolutionForwardAlgorithm_v7(h, conv_in, filter, fwd.conv, conv_out,
                                                   static_cast<int>(perf.size()), &returned, perf.data()),
            "cudnnGetConvolutionForwardAlgorithm_v7", label, dtype);
      }
      choose(
          fwd, perf, returned,
          [&](cudnnConvolutionFwdAlgo_t a, size_t* bytes) {
            return cudnnGetConvolutionForwardWorkspaceSize(h, conv_in, filter, fwd.conv, conv_out, a, bytes);
          },
          label + " convolution", dtype);
    }
    const Tensor ws = workspace(fwd.workspace);
    CUDNN_CHECK(cudnnConvolutionForward(h, &one, conv_in, in, filter, w, fwd.conv, fwd.algo, ws.raw(),
                                        fwd.workspace, &zero, conv_out, out));
  }

  // conv_in = conv^T(conv_out, W), overwritten.
  void adjoint(const void* out, const void* w, void* in) {
    cudnnHandle_t h = cuda::cudnn();
    if (!bwd_data.chosen) {
      std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT);
      int returned = 0;
      if (cuda::conv_algo_search()) {
        const Tensor ws = workspace(cuda::conv_workspace_limit());
        check_search(
            cudnnFindConvolutionBackwardDataAlgorithmEx(h, filter, w, conv_out, out, bwd_data.conv, conv_in,
                                                        in, static_cast<int>(perf.size()), &returned,
                                                        perf.data(), ws.raw(), cuda::conv_workspace_limit()),
            "cudnnFindConvolutionBackwardDataAlgorithmEx", label, dtype);
      } else {
        check_search(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, filter, conv_out, bwd_data.conv, conv_in,
                                                                 static_cast<int>(perf.size()), &returned,
                                                                 perf.data()),
                     "cudnnGetConvolutionBackwardDataAlgorithm_v7", label, dtype);
      }
      choose(
          bwd_data, perf, returned,
          [&](cudnnConvolutionBwdDataAlgo_t a, size_t* bytes) {
            return cudnnGetConvolutionBackwardDataWorkspaceSize(h, filter, conv_out, bwd_data.conv, conv_in,
                                                                a, bytes);
          },
          label + " adjoint convolution", dtype);
    }
    const Tensor ws = workspace(bwd_data.workspace);
    CUDNN_CHECK(cudnnConvolutionBackwardData(h, &one, filter, w, conv_out, out, bwd_data.conv, bwd_data.algo,
                                             ws.raw(), bwd_data.workspace, &zero, conv_in, in));
  }

  // dw = filter gradient of conv(conv_in, W) against d(conv_out) + beta dw, in the data's type.
  void filter_grad(const void* in, const void* d_out, void* dw, float beta) {
    cudnnHandle_t h = cuda::cudnn();
    if (!bwd_filter.chosen) {
      std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT);
      int returned = 0;
      if (cuda::conv_algo_search()) {
        // Timed into scratch: the registry's gradient accumulates and must not be overwritten.
        const Tensor ws = workspace(cuda::conv_workspace_limit());
        const Tensor scratch = workspace(filter_bytes);
        check_search(cudnnFindConvolutionBackwardFilterAlgorithmEx(
                         h, conv_in, in, conv_out, d_out, bwd_filter.conv, filter, scratch.raw(),
                         static_cast<int>(perf.size()), &returned, perf.data(), ws.raw(),
                         cuda::conv_workspace_limit()),
                     "cudnnFindConvolutionBackwardFilterAlgorithmEx", label, dtype);
      } else {
        check_search(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, conv_in, conv_out, bwd_filter.conv,
                                                                   filter, static_cast<int>(perf.size()),
                                                                   &returned, perf.data()),
                     "cudnnGetConvolutionBackwardFilterAlgorithm_v7", label, dtype);
      }
      choose(
          bwd_filter, perf, returned,
          [&](cudnnConvolutionBwdFilterAlgo_t a, size_t* bytes) {
            return cudnnGetConvolutionBackwardFilterWorkspaceSize(h, conv_in, conv_out, bwd_filter.conv,
                                                                  filter, a, bytes);
          },
          label + " filter gradient", dtype);
    }
    const Tensor ws = workspace(bwd_filter.workspace);
    CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, &one, conv_in, in, conv_out, d_out, bwd_filter.conv,
                                               bwd_filter.algo, ws.raw(), bwd_filter.workspace, &beta, filter,
                                               dw));
  }

  Shape in_shape;
  DType dtype;  // of the activations; the plan is rebuilt when it changes
  size_t filter_bytes = 0;
  Tensor weight16;  // 16-bit data only: the weights of the last forward, rounded to dtype
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
  if (!cuda_plan_ || cuda_plan_->in_shape != x.shape() || cuda_plan_->dtype != x.dtype())
    cuda_plan_.reset(
        new CudaPlan(geometry_, transposed_, x.shape(), out, weight_shape(), x.dtype(),
                     fmt::format("{} '{}' {} {}", kind_, name_, x.shape().str(), dtype_name(x.dtype()))));
  CudaPlan& p = *cuda_plan_;
  Tensor y = Tensor::empty(out, x.dtype(), Device::cuda);
  const void* filter = p.filter_for_forward(w);
  if (transposed_)
    p.adjoint(x.raw(), filter, y.raw());
  else
    p.convolution(x.raw(), filter, y.raw());
  if (geometry_.bias) {
    const float* b = registry_->value(bias_id_).data<float>();
    if (x.dtype() == DType::f32)
      CUDNN_CHECK(cudnnAddTensor(cuda::cudnn(), &one, p.bias, b, &one, p.layer_out(), y.raw()));
    else
      add_bias_reduced(y, b);
  }
  x_ = mode == Mode::train ? x : Tensor();
  return y;
}

Tensor ConvFamilyLayer::backward_cudnn(const Tensor& dy) {
  check_on_device(dy, "output gradient", kind_, name_);
  CudaPlan& p = *cuda_plan_;
  PDEGEN_CHECK(p.in_shape == x_.shape() && p.dtype == x_.dtype() && dy.dtype() == p.dtype,
               "{} '{}': GPU plan for {} {} but the kept input is {} and dy {}", kind_, name_,
               p.in_shape.str(), dtype_name(p.dtype), x_.describe(), dy.describe());
  const void* x = x_.raw();
  const void* g = dy.raw();
  float* dw = registry_->grad(weight_id_).data<float>();
  // Parameter gradients first, so their reduction can overlap dx. "Ready" means queued on the
  // compute stream: a reducer on another stream orders itself after it with an event.
  if (p.dtype == DType::f32) {
    p.filter_grad(transposed_ ? g : x, transposed_ ? x : g, dw, 1.0f);
  } else {
    // cuDNN writes a 16-bit filter gradient: overwrite scratch, then add it to the fp32 one.
    const Tensor dw16 = Tensor::empty(weight_shape(), p.dtype, Device::cuda);
    p.filter_grad(transposed_ ? g : x, transposed_ ? x : g, dw16.raw(), 0.0f);
    add_filter_grad_reduced(dw16, dw);
  }
  registry_->grad_ready(weight_id_);
  if (geometry_.bias) {
    accumulate_bias_grad(dy, registry_->grad(bias_id_).data<float>());
    registry_->grad_ready(bias_id_);
  }
  if (!needs_input_grad_) return Tensor();
  Tensor dx = Tensor::empty(x_.shape(), dy.dtype(), Device::cuda);
  // The filter of the forward: fp32 reads the registry as before, 16 bits the copy rounded then.
  const void* filter = p.dtype == DType::f32 ? registry_->value(weight_id_).raw() : p.weight16.raw();
  if (transposed_)
    p.convolution(g, filter, dx.raw());
  else
    p.adjoint(g, filter, dx.raw());
  return dx;
}

}  // namespace pdegen

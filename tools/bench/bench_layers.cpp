// Layer micro-benchmark: forward and backward time and GFLOP/s of every layer at U-Net shapes
// (batch 4, 256x256, 16-64 channels), in the layouts the network keeps them in (CPU: channel-blocked;
// GPU: plain NCHW), through the same Layer classes the network uses. The PyTorch peer
// tools/bench/torch_layers.py runs the same cases; tools/bench/compare_layers.py puts them side by side.
//   bench_layers [--batch 4] [--size 256] [--reps 5] [--filter conv] [--device cpu|cuda]
//                [--conv-math fp32|tf32|fp16_conversion] [--precision fp32|bf16]
// Prints one JSON object per line, like the peer (on cuda also "peak_mib", the device allocator's
// high-water mark during the case). --conv-math sets cuda::set_conv_math for the GPU convolutions;
// its default here is fp32, the peer's default (no TF32), not the library's tf32.
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend/cpu/dnnl_context.hpp"
#include "backend/cuda/cuda_context.hpp"
#include "bench_common.hpp"
#include "core/parameter.hpp"
#include "core/rng.hpp"
#include "core/timer.hpp"
#include "nn/activation.hpp"
#include "nn/batch_norm.hpp"
#include "nn/concat.hpp"
#include "nn/conv.hpp"
#include "nn/conv_transpose.hpp"
#include "nn/instance_norm.hpp"
#include "nn/pool.hpp"

#ifdef PDEGEN_HAVE_CUDA
#include "core/device_allocator.hpp"
#endif

using namespace pdegen;

namespace {

// Inputs of `dtype` in the layout the network keeps them in: on the CPU channel-blocked (fp32) or
// channels-last (bf16), plain on the GPU (docs/cuda.md: the blocked layout never goes to the device).
Tensor random_input(const Shape& shape, uint64_t stream, Device device, DType dtype) {
  Tensor plain = bench::random_field(shape, stream);
  if (device == Device::cuda) return to_dtype(plain.to(Device::cuda), dtype);
  return to_channel_block(to_dtype(plain, dtype), cpu::activation_block(shape[1], dtype));
}

struct Case {
  std::string name;
  // Runs one forward (returns nothing) and one backward; both set up by `make`.
  std::function<void()> forward, backward;
  Flops flops;
};

// A case not built yet: its name, and what builds it (tensors, layer, plans) when it is run.
struct CaseMaker {
  std::string name;
  std::function<Case()> make;
};

struct Options {
  int64_t batch = 4, size = 256;
  int reps = 5;
  std::string filter;
  Device device = Device::cpu;
  DType dtype = DType::f32;  // of the activations (mixed precision: bf16)
  cuda::ConvMath conv_math = cuda::ConvMath::fp32;
};

// A single-input layer case: owns the registry, the layer, the input and the upstream gradient.
template <class L, class... Args>
Case layer_case(std::string name, Device device, DType dtype, const Shape& in, Args&&... args) {
  auto reg = std::make_shared<ParameterRegistry>();
  auto layer = std::make_shared<L>(std::forward<Args>(args)..., *reg);
  reg->finalize(0, device);
  auto x = std::make_shared<Tensor>(random_input(in, 1, device, dtype));
  auto dy = std::make_shared<Tensor>(random_input(layer->output_shape(in), 2, device, dtype));
  Case c;
  c.name = std::move(name);
  c.flops = layer->flops(in);
  // The lambdas own the registry too: the layer holds a pointer to it.
  c.forward = [=] {
    (void)reg;
    layer->forward(*x, Mode::train);
  };
  c.backward = [=] { layer->backward(*dy); };
  return c;
}

template <class L, class... Args>
Case plain_layer_case(std::string name, Device device, DType dtype, const Shape& in, Args&&... args) {
  auto layer = std::make_shared<L>(std::forward<Args>(args)...);
  auto x = std::make_shared<Tensor>(random_input(in, 1, device, dtype));
  auto dy = std::make_shared<Tensor>(random_input(layer->output_shape(in), 2, device, dtype));
  Case c;
  c.name = std::move(name);
  c.flops = layer->flops(in);
  c.forward = [=] { layer->forward(*x, Mode::train); };
  c.backward = [=] { layer->backward(*dy); };
  return c;
}

// Every case, in the table's order; each is built only when run, so one case's tensors live at a
// time (at batch 16 all of them together would not fit a GPU's memory comfortably).
std::vector<CaseMaker> case_makers(const Options& o) {
  const int64_t n = o.batch, s = o.size;
  const Device dev = o.device;
  const DType dt = o.dtype;
  std::vector<CaseMaker> cases;
  auto add = [&](std::string name, std::function<Case(const std::string&)> make) {
    cases.push_back({name, [name, make] { return make(name); }});
  };
  auto conv = [&](int64_t cin, int64_t cout, int k) {
    ConvConfig cfg;
    cfg.in_channels = cin;
    cfg.out_channels = cout;
    cfg.kernel = k;
    cfg.padding = k / 2;
    add(fmt::format("conv{}x{}_s1 {}->{}", k, k, cin, cout), [=](const std::string& name) {
      return layer_case<Conv>(name, dev, dt, Shape{n, cin, s, s}, "c", cfg);
    });
  };
  conv(1, 16, 3);
  conv(16, 16, 3);
  conv(32, 32, 3);
  conv(64, 64, 3);
  conv(16, 1, 1);
  for (auto [cin, cout] : {std::pair<int64_t, int64_t>{32, 16}, {64, 32}}) {
    ConvTransposeConfig cfg;
    cfg.in_channels = cin;
    cfg.out_channels = cout;
    add(fmt::format("convT2x2_s2 {}->{}", cin, cout), [=, c = cin](const std::string& name) {
      return layer_case<ConvTranspose>(name, dev, dt, Shape{n, c, s, s}, "t", cfg);
    });
  }
  for (int64_t c : {16, 32, 64}) {
    BatchNormConfig cfg;
    cfg.channels = c;
    add(fmt::format("batch_norm {}", c), [=](const std::string& name) {
      return layer_case<BatchNorm>(name, dev, dt, Shape{n, c, s, s}, "bn", cfg);
    });
  }
  {
    InstanceNormConfig cfg;
    cfg.channels = 16;
    add("instance_norm 16", [=](const std::string& name) {
      return layer_case<InstanceNorm>(name, dev, dt, Shape{n, 16, s, s}, "in", cfg);
    });
  }
  for (auto [act, kind] : {std::pair<const char*, ActivationKind>{"relu", ActivationKind::relu},
                           {"silu", ActivationKind::silu},
                           {"tanh", ActivationKind::tanh}})
    add(fmt::format("{} 16", act), [=, k = kind](const std::string& name) {
      return plain_layer_case<Activation>(name, dev, dt, Shape{n, 16, s, s}, k);
    });
  for (int64_t c : {16, 64}) {
    PoolConfig cfg;
    add(fmt::format("max_pool2x2 {}", c), [=](const std::string& name) {
      return plain_layer_case<MaxPool>(name, dev, dt, Shape{n, c, s, s}, cfg);
    });
  }
  {
    PoolConfig cfg;
    add("avg_pool2x2 16", [=](const std::string& name) {
      return plain_layer_case<AvgPool>(name, dev, dt, Shape{n, 16, s, s}, cfg);
    });
  }
  add("concat 16+16", [=](const std::string& name) {
    auto cat = std::make_shared<Concat>();
    auto a = std::make_shared<Tensor>(random_input(Shape{n, 16, s, s}, 1, dev, dt));
    auto b = std::make_shared<Tensor>(random_input(Shape{n, 16, s, s}, 3, dev, dt));
    auto dy = std::make_shared<Tensor>(random_input(Shape{n, 32, s, s}, 2, dev, dt));
    Case c;
    c.name = name;
    c.forward = [=] { cat->forward(*a, *b); };
    c.backward = [=] { cat->backward(*dy); };
    return c;
  });
  return cases;
}

bool parse_conv_math(const std::string& text, cuda::ConvMath& math) {
  if (text == "fp32")
    math = cuda::ConvMath::fp32;
  else if (text == "tf32")
    math = cuda::ConvMath::tf32;
  else if (text == "fp16_conversion")
    math = cuda::ConvMath::fp16_conversion;
  else
    return false;
  return true;
}

// Device memory in use at its high-water mark since the last reset, in MiB (GPU runs only).
void reset_device_peak() {
#ifdef PDEGEN_HAVE_CUDA
  cuda::DeviceAllocator::instance().reset_peak();
#endif
}
double device_peak_mib() {
#ifdef PDEGEN_HAVE_CUDA
  return static_cast<double>(cuda::DeviceAllocator::instance().stats().peak_in_use) / (1024.0 * 1024.0);
#else
  return 0.0;
#endif
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  std::string conv_math_name = "fp32";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_layers: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return std::string(argv[++i]);
    };
    if (a == "--batch")
      o.batch = std::stoll(next());
    else if (a == "--size")
      o.size = std::stoll(next());
    else if (a == "--reps")
      o.reps = std::stoi(next());
    else if (a == "--filter")
      o.filter = next();
    else if (a == "--device") {
      const std::string d = next();
      if (d != "cpu" && d != "cuda") {
        std::fprintf(stderr, "bench_layers: --device is 'cpu' or 'cuda', not '%s'\n", d.c_str());
        return 2;
      }
      o.device = d == "cuda" ? Device::cuda : Device::cpu;
    } else if (a == "--conv-math") {
      conv_math_name = next();
      if (!parse_conv_math(conv_math_name, o.conv_math)) {
        std::fprintf(stderr, "bench_layers: --conv-math is fp32, tf32 or fp16_conversion, not '%s'\n",
                     conv_math_name.c_str());
        return 2;
      }
    } else if (a == "--precision") {
      const std::string p = next();
      if (p != "fp32" && p != "bf16") {
        std::fprintf(stderr, "bench_layers: --precision is 'fp32' or 'bf16', not '%s'\n", p.c_str());
        return 2;
      }
      o.dtype = p == "bf16" ? DType::bf16 : DType::f32;
    } else {
      std::fprintf(
          stderr,
          "usage: bench_layers [--batch N] [--size S] [--reps R] [--filter TEXT] [--device cpu|cuda] "
          "[--conv-math fp32|tf32|fp16_conversion] [--precision fp32|bf16]\n");
      return 2;
    }
  }
  const bool on_gpu = o.device == Device::cuda;
  if (on_gpu) {
    std::string why;
    if (!cuda::available(&why)) {
      // The reason says which: "built without CUDA (configure with ...)" or "no usable CUDA device: ...".
      std::fprintf(stderr, "bench_layers: --device cuda is not available: %s\n", why.c_str());
      return 2;
    }
  }
  try {
    if (on_gpu) {
      cuda::select_device(0);
      cuda::set_conv_math(o.conv_math);
      std::fprintf(stderr, "# bench_layers: batch %lld, %lldx%lld, cuda: %s, conv math %s\n",
                   static_cast<long long>(o.batch), static_cast<long long>(o.size),
                   static_cast<long long>(o.size), cuda::describe_device().c_str(), conv_math_name.c_str());
    } else {
      std::fprintf(stderr, "# bench_layers: batch %lld, %lldx%lld, %d OpenMP threads, channel block %d\n",
                   static_cast<long long>(o.batch), static_cast<long long>(o.size),
                   static_cast<long long>(o.size), omp_get_max_threads(), cpu::preferred_channel_block());
    }
    // GPU work is queued on one stream: wait for it before reading the clock on either side of a call.
    auto sync = [&] {
      if (on_gpu) cuda::synchronize();
    };
    for (const auto& maker : case_makers(o)) {
      if (maker.name.find(o.filter) == std::string::npos) continue;
      const Case c = maker.make();
      for (int w = 0; w < 2; ++w) {  // warm-up: JIT, primitive caches / cuDNN algorithm search, allocator
        c.forward();
        c.backward();
      }
      sync();
      if (on_gpu) reset_device_peak();
      std::vector<double> tf, tb;
      for (int r = 0; r < o.reps; ++r) {
        Timer t;
        c.forward();
        sync();
        tf.push_back(t.seconds());
        t.reset();
        c.backward();
        sync();
        tb.push_back(t.seconds());
      }
      const double f = bench::median(tf) * 1e3, b = bench::median(tb) * 1e3;
      const std::string peak =
          on_gpu ? fmt::format(", \"peak_mib\": {:.1f}", device_peak_mib()) : std::string();
      std::printf(
          "{\"case\": \"%s\", \"fwd_ms\": %.4f, \"bwd_ms\": %.4f, \"gflops_fwd\": %.2f, \"gflops_bwd\": "
          "%.2f%s}\n",
          c.name.c_str(), f, b, c.flops.forward / f / 1e6, c.flops.backward() / b / 1e6, peak.c_str());
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_layers: %s\n", e.what());
    return 1;
  }
  return 0;
}

// Layer micro-benchmark: forward and backward time and GFLOP/s of every CPU layer at U-Net shapes
// (batch 4, 256x256, 16-64 channels), in the layouts the network keeps them in. The PyTorch peer
// tools/bench/torch_layers.py runs the same cases; tools/bench/compare_layers.sh puts them side by side.
//   bench_layers [--batch 4] [--size 256] [--reps 5] [--filter conv]
// Prints one JSON object per line, like the peer.
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend/cpu/dnnl_context.hpp"
#include "bench_common.hpp"
#include "core/rng.hpp"
#include "core/timer.hpp"
#include "nn/activation.hpp"
#include "nn/batch_norm.hpp"
#include "nn/concat.hpp"
#include "nn/conv.hpp"
#include "nn/conv_transpose.hpp"
#include "nn/instance_norm.hpp"
#include "nn/parameter.hpp"
#include "nn/pool.hpp"

using namespace pdegen;

namespace {

// Inputs in the layout the network keeps them in.
Tensor random_input(const Shape& shape, uint64_t stream) {
  return to_channel_block(bench::random_field(shape, stream), cpu::channel_block_for(shape[1]));
}

struct Case {
  std::string name;
  // Runs one forward (returns nothing) and one backward; both set up by `make`.
  std::function<void()> forward, backward;
  Flops flops;
};

struct Options {
  int64_t batch = 4, size = 256;
  int reps = 5;
  std::string filter;
};

// A single-input layer case: owns the registry, the layer, the input and the upstream gradient.
template <class L, class... Args>
Case layer_case(std::string name, const Shape& in, Args&&... args) {
  auto reg = std::make_shared<ParameterRegistry>();
  auto layer = std::make_shared<L>(std::forward<Args>(args)..., *reg);
  reg->finalize(0);
  auto x = std::make_shared<Tensor>(random_input(in, 1));
  auto dy = std::make_shared<Tensor>(random_input(layer->output_shape(in), 2));
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
Case plain_layer_case(std::string name, const Shape& in, Args&&... args) {
  auto layer = std::make_shared<L>(std::forward<Args>(args)...);
  auto x = std::make_shared<Tensor>(random_input(in, 1));
  auto dy = std::make_shared<Tensor>(random_input(layer->output_shape(in), 2));
  Case c;
  c.name = std::move(name);
  c.flops = layer->flops(in);
  c.forward = [=] { layer->forward(*x, Mode::train); };
  c.backward = [=] { layer->backward(*dy); };
  return c;
}

std::vector<Case> make_cases(const Options& o) {
  const int64_t n = o.batch, s = o.size;
  std::vector<Case> cases;
  auto conv = [&](int64_t cin, int64_t cout, int k) {
    ConvConfig cfg;
    cfg.in_channels = cin;
    cfg.out_channels = cout;
    cfg.kernel = k;
    cfg.padding = k / 2;
    cases.push_back(
        layer_case<Conv>(fmt::format("conv{}x{}_s1 {}->{}", k, k, cin, cout), Shape{n, cin, s, s}, "c", cfg));
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
    cases.push_back(layer_case<ConvTranspose>(fmt::format("convT2x2_s2 {}->{}", cin, cout),
                                              Shape{n, cin, s, s}, "t", cfg));
  }
  for (int64_t c : {16, 32, 64}) {
    BatchNormConfig cfg;
    cfg.channels = c;
    cases.push_back(layer_case<BatchNorm>(fmt::format("batch_norm {}", c), Shape{n, c, s, s}, "bn", cfg));
  }
  {
    InstanceNormConfig cfg;
    cfg.channels = 16;
    cases.push_back(layer_case<InstanceNorm>("instance_norm 16", Shape{n, 16, s, s}, "in", cfg));
  }
  for (auto [name, kind] : {std::pair<const char*, ActivationKind>{"relu", ActivationKind::relu},
                            {"silu", ActivationKind::silu},
                            {"tanh", ActivationKind::tanh}})
    cases.push_back(plain_layer_case<Activation>(fmt::format("{} 16", name), Shape{n, 16, s, s}, kind));
  for (int64_t c : {16, 64}) {
    PoolConfig cfg;
    cases.push_back(plain_layer_case<MaxPool>(fmt::format("max_pool2x2 {}", c), Shape{n, c, s, s}, cfg));
  }
  {
    PoolConfig cfg;
    cases.push_back(plain_layer_case<AvgPool>("avg_pool2x2 16", Shape{n, 16, s, s}, cfg));
  }
  {
    auto cat = std::make_shared<Concat>();
    auto a = std::make_shared<Tensor>(random_input(Shape{n, 16, s, s}, 1));
    auto b = std::make_shared<Tensor>(random_input(Shape{n, 16, s, s}, 3));
    auto dy = std::make_shared<Tensor>(random_input(Shape{n, 32, s, s}, 2));
    Case c;
    c.name = "concat 16+16";
    c.forward = [=] { cat->forward(*a, *b); };
    c.backward = [=] { cat->backward(*dy); };
    cases.push_back(std::move(c));
  }
  return cases;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
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
    else {
      std::fprintf(stderr, "usage: bench_layers [--batch N] [--size S] [--reps R] [--filter TEXT]\n");
      return 2;
    }
  }
  try {
    std::fprintf(stderr, "# bench_layers: batch %lld, %lldx%lld, %d OpenMP threads, channel block %d\n",
                 static_cast<long long>(o.batch), static_cast<long long>(o.size),
                 static_cast<long long>(o.size), omp_get_max_threads(), cpu::preferred_channel_block());
    // Build cases lazily one at a time so their tensors do not all live at once.
    const auto all = make_cases(o);
    for (const auto& c : all) {
      if (c.name.find(o.filter) == std::string::npos) continue;
      for (int w = 0; w < 2; ++w) {  // warm-up: JIT, primitive caches, allocator
        c.forward();
        c.backward();
      }
      std::vector<double> tf, tb;
      for (int r = 0; r < o.reps; ++r) {
        Timer t;
        c.forward();
        tf.push_back(t.seconds());
        t.reset();
        c.backward();
        tb.push_back(t.seconds());
      }
      const double f = bench::median(tf) * 1e3, b = bench::median(tb) * 1e3;
      std::printf(
          "{\"case\": \"%s\", \"fwd_ms\": %.4f, \"bwd_ms\": %.4f, \"gflops_fwd\": %.2f, \"gflops_bwd\": "
          "%.2f}\n",
          c.name.c_str(), f, b, c.flops.forward / f / 1e6, c.flops.backward() / b / 1e6);
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_layers: %s\n", e.what());
    return 1;
  }
  return 0;
}

// U-Net benchmark: forward and backward time, GFLOP/s and peak host memory of a training step of the
// deck's default network (depth 4, base 16, no norm, ReLU, max-pool, transposed-conv up-sampling) at
// 64^2 batch 16, 256^2 batch 4 and 1024^2 batch 1.
//   bench_unet [--reps 5] [--filter 256] [--norm none|batch|instance] [--upsample
//   transposed_conv|resize_conv]
// Prints one JSON object per case. peak_bytes is the allocator's high-water mark over the timed steps
// (parameters, input and dy included); resident_bytes what was allocated when they started (the
// parameters, the input, dy, and what the layers still hold from the previous step); plan_bytes the
// plan's model of a step's activation memory (NetworkPlan::peak_activation_bytes).
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "backend/cpu/dnnl_context.hpp"
#include "bench_common.hpp"
#include "config/choices.hpp"
#include "core/allocator.hpp"
#include "core/rng.hpp"
#include "core/timer.hpp"
#include "nn/network_factory.hpp"
#include "nn/unet_plan.hpp"

using namespace pdegen;

namespace {

struct Options {
  int reps = 5;
  std::string filter;
  NetworkConfig network;  // the deck's defaults
};

template <class E>
E parse_choice(const std::string& word) {
  for (const auto& entry : ChoiceNames<E>::table)
    if (entry.name == word) return entry.value;
  throw UserError(fmt::format("unknown choice '{}' (expected {})", word, choice_list<E>()));
}

void run_case(const Options& o, int64_t size, int64_t batch) {
  const NetworkPlan plan = plan_unet(o.network, Shape{1, size, size}, 1, batch);
  ParameterRegistry registry;
  const auto network = make_network(plan, registry);
  Network& net = *network;
  registry.finalize(0);
  const Tensor x = bench::random_field(Shape{batch, 1, size, size}, 1);
  const Tensor dy = bench::random_field(Shape{batch, 1, size, size}, 2);
  const Flops flops = net.flops(batch);

  for (int w = 0; w < 2; ++w) {  // warm-up: JIT kernels, primitive caches, the allocator's free lists
    net.forward(x, Mode::train);
    net.backward(dy);
  }
  CachingAllocator& allocator = CachingAllocator::host();
  const size_t resident = allocator.stats().in_use;
  allocator.reset_peak();
  std::vector<double> tf, tb;
  for (int r = 0; r < o.reps; ++r) {
    registry.zero_grads();
    Timer t;
    net.forward(x, Mode::train);
    tf.push_back(t.seconds());
    t.reset();
    net.backward(dy);
    tb.push_back(t.seconds());
  }
  const double f = bench::median(tf) * 1e3, b = bench::median(tb) * 1e3;
  std::printf(
      "{\"case\": \"%lldx%lld batch %lld\", \"fwd_ms\": %.2f, \"bwd_ms\": %.2f, \"step_ms\": %.2f, "
      "\"gflops_fwd\": %.1f, \"gflops_bwd\": %.1f, \"gflops_step\": %.1f, \"peak_bytes\": %zu, "
      "\"resident_bytes\": %zu, \"plan_bytes\": %lld, \"parameters\": %lld}\n",
      static_cast<long long>(size), static_cast<long long>(size), static_cast<long long>(batch), f, b, f + b,
      flops.forward / f / 1e6, flops.backward() / b / 1e6, flops.total() / (f + b) / 1e6,
      allocator.stats().peak_in_use, resident, static_cast<long long>(plan.peak_activation_bytes),
      static_cast<long long>(plan.parameters));
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto next = [&] {
        if (i + 1 >= argc) throw UserError(fmt::format("{} needs a value", a));
        return std::string(argv[++i]);
      };
      if (a == "--reps")
        o.reps = std::max(1, std::stoi(next()));
      else if (a == "--filter")
        o.filter = next();
      else if (a == "--norm")
        o.network.norm = parse_choice<NormKind>(next());
      else if (a == "--upsample")
        o.network.upsample = parse_choice<UpsampleKind>(next());
      else
        throw UserError(
            "usage: bench_unet [--reps N] [--filter TEXT] [--norm none|batch|instance] "
            "[--upsample transposed_conv|resize_conv]");
    }
    std::fprintf(
        stderr,
        "# bench_unet: depth %d, base %d, norm %s, upsample %s, %d OpenMP threads, channel block %d\n",
        o.network.depth, o.network.base_channels, std::string(name_of(o.network.norm)).c_str(),
        std::string(name_of(o.network.upsample)).c_str(), omp_get_max_threads(),
        cpu::preferred_channel_block());
    for (auto [size, batch] : {std::pair<int64_t, int64_t>{64, 16}, {256, 4}, {1024, 1}}) {
      if (fmt::format("{}x{} batch {}", size, size, batch).find(o.filter) == std::string::npos) continue;
      run_case(o, size, batch);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_unet: %s\n", e.what());
    return 1;
  }
  return 0;
}

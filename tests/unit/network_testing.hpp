// Helpers for the tests of network families (test_unet.cpp, test_fc_densenet.cpp): a network built
// from a plan, the parameters a plan must register, and the gradient check of every parameter tensor
// against central differences of the fp32 forward.
#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "nn/network_factory.hpp"
#include "testing.hpp"

namespace pdegen::testing {

inline Shape batched(const Shape& per_sample, int64_t batch) {
  Shape s{batch};
  for (int64_t d : per_sample) s.push_back(d);
  return s;
}

// A model: plan, registry and network, parameters initialised.
struct Model {
  NetworkPlan plan;
  ParameterRegistry registry;
  std::unique_ptr<Network> net;
  explicit Model(NetworkPlan p, uint64_t seed = 3) : plan(std::move(p)) {
    net = make_network(plan, registry);
    registry.finalize(seed);
  }
  Model(const NetworkConfig& config, const Shape& input, int64_t batch, Device device = Device::cpu)
      : plan(plan_network(config, input, 1, batch)) {
    net = make_network(plan, registry);
    registry.finalize(7, device);
  }
};

inline double weighted_sum(const Tensor& y, const Vec& w) { return dot(values_of(y), w); }

// The parameter tensors each conv, transposed conv and norm of the plan must register, in order.
inline std::vector<std::pair<std::string, Shape>> expected_parameters(const NetworkPlan& plan) {
  std::vector<std::pair<std::string, Shape>> out;
  const int nd = plan.spatial_dims;
  auto kernel_shape = [&](int64_t a, int64_t b, int k) {
    Shape s{a, b};
    for (int d = 0; d < nd; ++d) s.push_back(k);
    return s;
  };
  for (const PlanLayer& l : plan.layers) {
    int64_t count = 0;
    if (l.op == LayerOp::conv || l.op == LayerOp::conv_transpose) {
      // PyTorch's orders: Conv [Cout, Cin, k...], ConvTranspose [Cin, Cout, k...].
      const Shape w = l.op == LayerOp::conv ? kernel_shape(l.out[0], l.in[0], l.kernel)
                                            : kernel_shape(l.in[0], l.out[0], l.kernel);
      out.emplace_back(l.name + ".weight", w);
      count += w.numel();
      if (l.bias) {
        out.emplace_back(l.name + ".bias", Shape{l.out[0]});
        count += l.out[0];
      }
    } else if (l.op == LayerOp::norm) {
      out.emplace_back(l.name + ".weight", Shape{l.in[0]});
      out.emplace_back(l.name + ".bias", Shape{l.in[0]});
      count += 2 * l.in[0];
    }
    CHECK_MESSAGE(count == l.parameters, l.name);
  }
  return out;
}

// The loss L = sum(w .* y) in double over the fp32 forward, differentiated by central differences
// with step h = 3e-4 max(1, |p|) at `per_tensor` random entries of every parameter tensor. The error
// budget, measured on these nets: truncation, O(h^2), is negligible for this smooth (tanh) network;
// the fp32 forward's rounding divided by 2h stays below 1e-4 of the largest gradient; max-pool
// windows whose maximum changes hands within +-h make the quotient wrong by O(h) each: after a norm
// that reached 2% of the largest gradient at h = 1e-2 and stays below 6e-3 at 3e-4, where it meets
// the rounding. With the tolerance 2e-2 |g| + 2e-3 max|g| the probes below pass by a factor of 6 or
// more, while scaling the skip gradients by 0.9 fails 10 of the 14 nets (and a lost skip gradient
// or swapped concat halves, O(1) errors, fail all).
inline void check_parameter_gradients(Model& m, int per_tensor) {
  CAPTURE(m.plan.description);
  const Shape in = batched(m.plan.input, m.plan.global_batch);
  const Tensor x = tensor_from(random_vec(static_cast<size_t>(in.numel()), 11, -2, 2), in);
  const Vec w = random_vec(static_cast<size_t>(in.numel()), 12);

  m.registry.zero_grads();
  m.net->forward(x, Mode::train);
  m.net->backward(tensor_from(w, in));
  const Vec grads = values_of(m.registry.flat_grads());

  float* values = m.registry.flat_values().data<float>();
  struct Probe {
    std::string name;
    int64_t index;  // in the flat buffers
    double analytic, numeric;
  };
  std::vector<Probe> probes;
  uint64_t stream = 100;
  for (const Parameter& p : m.registry.params()) {
    for (double u : random_vec(static_cast<size_t>(per_tensor), stream++, 0, 1)) {
      const int64_t i = p.offset + std::min(p.shape.numel() - 1, static_cast<int64_t>(u * p.shape.numel()));
      const float keep = values[i];
      const double h = 3e-4 * std::max(1.0, std::abs(static_cast<double>(keep)));
      values[i] = static_cast<float>(keep + h);
      const double step_up = static_cast<double>(values[i]) - keep;  // the step fp32 really took
      const double lp = weighted_sum(m.net->forward(x, Mode::train), w);
      values[i] = static_cast<float>(keep - h);
      const double step_down = keep - static_cast<double>(values[i]);
      const double lm = weighted_sum(m.net->forward(x, Mode::train), w);
      values[i] = keep;
      probes.push_back({p.name, i, grads[static_cast<size_t>(i)], (lp - lm) / (step_up + step_down)});
    }
  }
  double largest = 0;
  for (const auto& p : probes) largest = std::max(largest, std::abs(p.numeric));
  REQUIRE(largest > 0);
  for (const auto& p : probes) {
    CAPTURE(p.name);
    CAPTURE(p.index);
    CAPTURE(p.numeric);
    const double tolerance = 2e-2 * std::abs(p.numeric) + 2e-3 * largest;
    CHECK(std::abs(p.analytic - p.numeric) <= tolerance);
  }
}

inline void check_parameter_gradients(const NetworkConfig& config, const Shape& input, int64_t batch,
                                      int per_tensor) {
  Model m(config, input, batch);
  check_parameter_gradients(m, per_tensor);
}

}  // namespace pdegen::testing

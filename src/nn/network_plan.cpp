// The network plan (see network_plan.hpp): the builder's shapes, parameters and FLOPs, the graph
// checks, the totals with the memory model, and the layer table.
#include "nn/network_plan.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "config/choices.hpp"
#include "core/error.hpp"

namespace pdegen {

std::string_view PlanLayer::kind() const {
  switch (op) {
    case LayerOp::conv:
      return "conv";
    case LayerOp::conv_transpose:
      return "conv_transpose";
    case LayerOp::norm:
      return norm == NormKind::batch ? "batch_norm" : "instance_norm";
    case LayerOp::activation:
      return name_of(activation);
    case LayerOp::max_pool:
      return "max_pool";
    case LayerOp::avg_pool:
      return "avg_pool";
    case LayerOp::upsample_nearest:
      return "upsample_nearest";
    case LayerOp::concat:
      return "concat";
  }
  return "?";
}

const Shape& NetworkPlan::shape_of(int producer) const {
  PDEGEN_CHECK(producer >= PlanLayer::network_input && producer < static_cast<int>(layers.size()),
               "network plan: no layer {}", producer);
  return producer == PlanLayer::network_input ? input : layers[static_cast<size_t>(producer)].out;
}

std::vector<std::vector<int>> NetworkPlan::readers() const {
  std::vector<std::vector<int>> out(layers.size());
  for (size_t k = 0; k < layers.size(); ++k)
    for (int i : layers[k].inputs)
      if (i != PlanLayer::network_input) out[static_cast<size_t>(i)].push_back(static_cast<int>(k));
  return out;
}

namespace {

double power(double base, int exponent) { return std::pow(base, exponent); }

Shape with_channels(Shape s, int64_t c) {
  s[0] = c;
  return s;
}

Shape scaled(Shape s, int64_t multiply, int64_t divide) {
  for (int i = 1; i < s.rank(); ++i) s[i] = s[i] * multiply / divide;
  return s;
}

// The memory model of NetworkPlan::peak_activation_bytes, in values per sample. A layer output is
// last used by its producer's backward, which runs after every reader's; the input by its first
// reader's, the last backward of all, so both stay counted until the walk has passed them. A
// tensor's gradient lives from its first contribution (its last reader's backward; the sum of later
// ones takes its place) until its producer's backward takes it as dy.
double peak_activation_values(const NetworkPlan& plan) {
  const auto& layers = plan.layers;
  const size_t n = layers.size();
  // Forward end: the input and every output are kept.
  double kept = static_cast<double>(plan.input.numel());
  for (const auto& l : layers) kept += static_cast<double>(l.out.numel());
  double peak = kept;
  std::vector<double> waiting(n, 0);  // gradient of layer i's output, from readers already run
  double pending = 0;
  for (size_t k = n; k-- > 0;) {
    const PlanLayer& l = layers[k];
    const double dy = static_cast<double>(l.out.numel());
    double dx = l.input_needs_grad ? static_cast<double>(l.in.numel()) : 0;
    if (l.op == LayerOp::concat) dx = dy;  // every part of dy comes back as a gradient
    pending -= waiting[k];                 // becomes this layer's dy
    waiting[k] = 0;
    peak = std::max(peak, kept + dy + dx + pending);
    if (dx > 0)
      for (int i : l.inputs) {
        if (i == PlanLayer::network_input || waiting[static_cast<size_t>(i)] > 0) continue;
        waiting[static_cast<size_t>(i)] = static_cast<double>(plan.shape_of(i).numel());
        pending += waiting[static_cast<size_t>(i)];
      }
    kept -= dy;  // this layer's output is no longer needed
  }
  return peak;
}

// What the layer table shows as a layer's input: the shape of the previous layer's output when it
// reads it, and '#i' for every other tensor it reads ('#in' for the network input).
std::string inputs_text(const NetworkPlan& plan, size_t k) {
  const auto& inputs = plan.layers[k].inputs;
  const int previous = static_cast<int>(k) - 1;
  auto label = [](int i) {
    return i == PlanLayer::network_input ? std::string("#in") : fmt::format("#{}", i);
  };
  std::string text;
  const bool reads_previous = std::find(inputs.begin(), inputs.end(), previous) != inputs.end();
  if (reads_previous) text = plan.shape_of(previous).str();
  for (int i : inputs) {
    if (i == previous) continue;
    if (!text.empty()) text += "+";
    text += label(i);
  }
  return text;
}

}  // namespace

std::vector<std::string> NetworkPlan::layer_table() const {
  std::vector<std::string> rows;
  rows.push_back(fmt::format("{:>3}  {:<14} {:<20} {:<18} {:<18} {:>10} {:>11} {:>11}", "#", "layer", "kind",
                             "input", "output", "params", "MFLOP fwd", "MFLOP bwd"));
  for (size_t i = 0; i < layers.size(); ++i) {
    const auto& l = layers[i];
    std::string kind(l.kind());
    if (l.op == LayerOp::conv || l.op == LayerOp::conv_transpose || l.op == LayerOp::max_pool ||
        l.op == LayerOp::avg_pool)
      kind += fmt::format(" {}{}{}", l.kernel, l.stride > 1 ? fmt::format("/{}", l.stride) : "",
                          l.bias ? "+b" : "");
    rows.push_back(fmt::format("{:>3}  {:<14} {:<20} {:<18} {:<18} {:>10} {:>11.2f} {:>11.2f}", i, l.name,
                               kind, inputs_text(*this, i), l.out.str(), l.parameters, l.flops.forward * 1e-6,
                               l.flops.backward() * 1e-6));
  }
  return rows;
}

PlanBuilder::PlanBuilder(NetworkPlan& plan, const Shape& input, int64_t global_batch)
    : plan_(plan), dims_(input.rank() - 1) {
  PDEGEN_CHECK(input.rank() == 3 || input.rank() == 4,
               "network input must be [C, H, W] or [C, D, H, W], got {}", input.str());
  PDEGEN_CHECK(global_batch >= 1, "global batch {}", global_batch);
  plan_ = NetworkPlan{};
  plan_.spatial_dims = dims_;
  plan_.input = input;
  plan_.global_batch = global_batch;
}

PlanLayer& PlanBuilder::add(LayerOp op, std::string name, int level, std::vector<int> inputs) {
  for (int i : inputs)
    PDEGEN_CHECK(i >= PlanLayer::network_input && i < static_cast<int>(plan_.layers.size()),
                 "network plan: layer '{}' reads layer {}, which is not an earlier one", name, i);
  PlanLayer l;
  l.op = op;
  l.name = std::move(name);
  l.level = level;
  l.in = plan_.shape_of(inputs.back());
  l.out = l.in;
  l.input_needs_grad =
      std::any_of(inputs.begin(), inputs.end(), [](int i) { return i != PlanLayer::network_input; });
  l.inputs = std::move(inputs);
  plan_.layers.push_back(std::move(l));
  return plan_.layers.back();
}

int PlanBuilder::conv(std::string name, int level, int input, int64_t cout, int kernel, int stride,
                      bool bias) {
  PlanLayer& l = add(LayerOp::conv, std::move(name), level, {input});
  l.kernel = kernel;
  l.stride = stride;
  l.padding = stride == 1 ? kernel / 2 : 0;
  l.bias = bias;
  l.out = with_channels(scaled(l.in, 1, stride), cout);
  const double taps = power(kernel, dims_);
  const double cin = static_cast<double>(l.in[0]);
  l.parameters = static_cast<int64_t>(static_cast<double>(cout) * cin * taps) + (bias ? cout : 0);
  const double macs = static_cast<double>(l.out.numel()) * cin * taps;
  l.flops = {2 * macs, l.input_needs_grad ? 2 * macs : 0, 2 * macs};
  return static_cast<int>(plan_.layers.size()) - 1;
}

int PlanBuilder::conv_transpose(std::string name, int level, int input, int64_t cout, bool bias) {
  PlanLayer& l = add(LayerOp::conv_transpose, std::move(name), level, {input});
  l.kernel = 2;
  l.stride = 2;
  l.bias = bias;
  l.out = with_channels(scaled(l.in, 2, 1), cout);
  const double taps = power(2, dims_);
  const double cin = static_cast<double>(l.in[0]);
  l.parameters = static_cast<int64_t>(cin * static_cast<double>(cout) * taps) + (bias ? cout : 0);
  const double macs = static_cast<double>(l.in.numel()) * static_cast<double>(cout) * taps;
  l.flops = {2 * macs, 2 * macs, 2 * macs};
  return static_cast<int>(plan_.layers.size()) - 1;
}

int PlanBuilder::norm(std::string name, int level, int input, NormKind kind) {
  PDEGEN_CHECK(kind != NormKind::none, "network plan: norm layer '{}' of kind none", name);
  PlanLayer& l = add(LayerOp::norm, std::move(name), level, {input});
  l.norm = kind;
  l.parameters = 2 * l.in[0];
  const double n = static_cast<double>(l.in.numel());
  l.flops = {5 * n, 8 * n, 0};
  return static_cast<int>(plan_.layers.size()) - 1;
}

int PlanBuilder::activation(std::string name, int level, int input, ActivationKind kind) {
  PlanLayer& l = add(LayerOp::activation, std::move(name), level, {input});
  l.activation = kind;
  const double n = static_cast<double>(l.in.numel());
  l.flops = {n, n, 0};
  return static_cast<int>(plan_.layers.size()) - 1;
}

int PlanBuilder::pool(LayerOp op, std::string name, int level, int input) {
  PDEGEN_CHECK(op == LayerOp::max_pool || op == LayerOp::avg_pool, "network layer '{}' is not a pool", name);
  PlanLayer& l = add(op, std::move(name), level, {input});
  l.kernel = 2;
  l.stride = 2;
  l.out = scaled(l.in, 1, 2);
  const double n = power(2, dims_) * static_cast<double>(l.out.numel());
  l.flops = {n, n, 0};
  return static_cast<int>(plan_.layers.size()) - 1;
}

int PlanBuilder::upsample_nearest(std::string name, int level, int input) {
  PlanLayer& l = add(LayerOp::upsample_nearest, std::move(name), level, {input});
  l.out = scaled(l.in, 2, 1);
  // Forward copies; backward sums 2^d gradients into each input value.
  l.flops = {0, static_cast<double>(l.out.numel()), 0};
  return static_cast<int>(plan_.layers.size()) - 1;
}

int PlanBuilder::concat(std::string name, int level, std::vector<int> inputs) {
  PDEGEN_CHECK(inputs.size() >= 2, "network plan: concat '{}' of {} tensors", name, inputs.size());
  int64_t channels = 0;
  for (int i : inputs) {
    const Shape& s = plan_.shape_of(i);
    const Shape& first = plan_.shape_of(inputs.front());
    bool same = s.rank() == first.rank();
    for (int a = 1; same && a < s.rank(); ++a) same = s[a] == first[a];
    PDEGEN_CHECK(same, "network plan: concat '{}' of {} and {}", name, first.str(), s.str());
    channels += s[0];
  }
  PlanLayer& l = add(LayerOp::concat, std::move(name), level, std::move(inputs));
  l.out = with_channels(l.in, channels);
  return static_cast<int>(plan_.layers.size()) - 1;
}

void PlanBuilder::finish() {
  auto& layers = plan_.layers;
  PDEGEN_CHECK(!layers.empty(), "network plan without layers");
  const auto readers = plan_.readers();
  std::set<std::string> names;
  for (size_t k = 0; k < layers.size(); ++k) {
    PDEGEN_CHECK(names.insert(layers[k].name).second, "network plan: two layers named '{}'", layers[k].name);
    PDEGEN_CHECK(k + 1 == layers.size() || !readers[k].empty(),
                 "network plan: nothing reads the output of layer '{}'", layers[k].name);
  }
  plan_.output = layers.back().out;
  plan_.parameters = 0;
  plan_.forward_flops_per_sample = plan_.backward_flops_per_sample = 0;
  for (const auto& l : layers) {
    plan_.parameters += l.parameters;
    plan_.forward_flops_per_sample += l.flops.forward;
    plan_.backward_flops_per_sample += l.flops.backward();
  }
  const double batch = static_cast<double>(plan_.global_batch);
  plan_.flops_per_step = (plan_.forward_flops_per_sample + plan_.backward_flops_per_sample) * batch;
  plan_.peak_activation_bytes = static_cast<int64_t>(peak_activation_values(plan_) * batch * 4);
}

}  // namespace pdegen

namespace pdegen {

void check_deck_grid(const Deck& deck, int halvings, const std::string& exponent, const std::string& network,
                     const std::string& remedy) {
  const Shape input = input_shape(deck.problem);
  const int64_t factor = int64_t{1} << std::clamp(halvings, 0, 62);
  auto check = [&](std::string_view key, int64_t n) {
    if (n % factor == 0) return;
    const int64_t below = n / factor * factor, above = below + factor;
    throw UserError(fmt::format(
        "{} = {} is not divisible by 2^({}) = {}: {} halves the grid {} time{}; use a multiple of {}{} or {}",
        key, n, exponent, factor, network, halvings, halvings == 1 ? "" : "s", factor,
        below >= 3 ? fmt::format(" such as {} or {}", below, above) : fmt::format(" such as {}", above),
        remedy));
  };
  check("problem.resolution", deck.problem.resolution);
  if (deck.problem.pde == PdeKind::burgers1d) check("problem.time_resolution", input[1]);
}

}  // namespace pdegen

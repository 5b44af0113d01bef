// The U-Net plan (see unet_spec.hpp): layer list, shapes, parameters, FLOPs and the memory model.
#include "nn/unet_spec.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "config/choices.hpp"
#include "core/error.hpp"

namespace pdegen {

std::string_view UNetLayer::kind() const {
  switch (op) {
    case UNetOp::conv:
      return "conv";
    case UNetOp::conv_transpose:
      return "conv_transpose";
    case UNetOp::norm:
      return norm == NormKind::batch ? "batch_norm" : "instance_norm";
    case UNetOp::activation:
      return name_of(activation);
    case UNetOp::max_pool:
      return "max_pool";
    case UNetOp::upsample_nearest:
      return "upsample_nearest";
    case UNetOp::concat:
      return "concat";
  }
  return "?";
}

namespace {

double power(double base, int exponent) { return std::pow(base, exponent); }

// Appends layers, tracking the current per-sample shape; FLOPs follow Conv::flops,
// ConvTranspose::flops, Pool::flops, BatchNorm/InstanceNorm::flops and Activation::flops.
class PlanBuilder {
 public:
  PlanBuilder(UNetPlan& plan, const Shape& input) : plan_(plan), shape_(input), dims_(input.rank() - 1) {}

  const Shape& shape() const { return shape_; }
  int last() const { return static_cast<int>(plan_.layers.size()) - 1; }

  void conv(std::string name, int level, int64_t cout, int kernel, int stride, bool bias) {
    UNetLayer& l = add(UNetOp::conv, std::move(name), level);
    l.kernel = kernel;
    l.stride = stride;
    l.padding = stride == 1 ? kernel / 2 : 0;
    l.bias = bias;
    l.out = with_channels(scaled(shape_, 1, stride), cout);
    const double taps = power(kernel, dims_);
    const double cin = static_cast<double>(l.in[0]);
    l.parameters = static_cast<int64_t>(static_cast<double>(cout) * cin * taps) + (bias ? cout : 0);
    const double macs = static_cast<double>(l.out.numel()) * cin * taps;
    l.flops = {2 * macs, l.input_needs_grad ? 2 * macs : 0, 2 * macs};
    shape_ = l.out;
  }
  void conv_transpose(std::string name, int level, int64_t cout, bool bias) {
    UNetLayer& l = add(UNetOp::conv_transpose, std::move(name), level);
    l.kernel = 2;
    l.stride = 2;
    l.bias = bias;
    l.out = with_channels(scaled(shape_, 2, 1), cout);
    const double taps = power(2, dims_);
    const double cin = static_cast<double>(l.in[0]);
    l.parameters = static_cast<int64_t>(cin * static_cast<double>(cout) * taps) + (bias ? cout : 0);
    const double macs = static_cast<double>(l.in.numel()) * static_cast<double>(cout) * taps;
    l.flops = {2 * macs, 2 * macs, 2 * macs};
    shape_ = l.out;
  }
  void norm(std::string name, int level, NormKind kind) {
    UNetLayer& l = add(UNetOp::norm, std::move(name), level);
    l.norm = kind;
    l.parameters = 2 * shape_[0];
    const double n = static_cast<double>(shape_.numel());
    l.flops = {5 * n, 8 * n, 0};
  }
  void activation(std::string name, int level, ActivationKind kind) {
    UNetLayer& l = add(UNetOp::activation, std::move(name), level);
    l.activation = kind;
    const double n = static_cast<double>(shape_.numel());
    l.flops = {n, n, 0};
  }
  void max_pool(std::string name, int level) {
    UNetLayer& l = add(UNetOp::max_pool, std::move(name), level);
    l.kernel = 2;
    l.stride = 2;
    l.out = scaled(shape_, 1, 2);
    const double n = power(2, dims_) * static_cast<double>(l.out.numel());
    l.flops = {n, n, 0};
    shape_ = l.out;
  }
  void upsample_nearest(std::string name, int level) {
    UNetLayer& l = add(UNetOp::upsample_nearest, std::move(name), level);
    l.out = scaled(shape_, 2, 1);
    // Forward copies; backward sums 2^d gradients into each input value.
    l.flops = {0, static_cast<double>(l.out.numel()), 0};
    shape_ = l.out;
  }
  void concat(std::string name, int level, int skip) {
    UNetLayer& l = add(UNetOp::concat, std::move(name), level);
    l.skip = skip;
    l.out = with_channels(shape_, shape_[0] + plan_.layers[static_cast<size_t>(skip)].out[0]);
    shape_ = l.out;
  }

 private:
  UNetLayer& add(UNetOp op, std::string name, int level) {
    UNetLayer l;
    l.op = op;
    l.name = std::move(name);
    l.level = level;
    l.in = shape_;
    l.out = shape_;
    l.input_needs_grad = !plan_.layers.empty();
    plan_.layers.push_back(std::move(l));
    return plan_.layers.back();
  }
  static Shape with_channels(Shape s, int64_t c) {
    s[0] = c;
    return s;
  }
  static Shape scaled(Shape s, int64_t multiply, int64_t divide) {
    for (int i = 1; i < s.rank(); ++i) s[i] = s[i] * multiply / divide;
    return s;
  }

  UNetPlan& plan_;
  Shape shape_;
  int dims_;
};

// One level's conv block: convs_per_level x [conv -> norm -> activation].
void conv_block(PlanBuilder& b, const NetworkConfig& net, const std::string& prefix, int level,
                int64_t channels) {
  const bool has_norm = net.norm != NormKind::none;
  for (int j = 0; j < net.convs_per_level; ++j) {
    b.conv(fmt::format("{}.conv{}", prefix, j), level, channels, net.kernel_size, 1, !has_norm);
    if (has_norm) b.norm(fmt::format("{}.norm{}", prefix, j), level, net.norm);
    b.activation(fmt::format("{}.act{}", prefix, j), level, net.activation);
  }
}

// The memory model of UNetPlan::peak_activation_bytes, in values per sample.
double peak_activation_values(const UNetPlan& plan) {
  const auto& layers = plan.layers;
  const size_t n = layers.size();
  // Forward end: the input and every output are kept.
  double kept = static_cast<double>(plan.input.numel());
  for (const auto& l : layers) kept += static_cast<double>(l.out.numel());
  double peak = kept;
  std::map<int, double> pending_skip;  // skip gradient waiting for layer `key`'s backward
  double pending = 0;
  for (size_t k = n; k-- > 0;) {
    const UNetLayer& l = layers[k];
    const double dy = static_cast<double>(l.out.numel());
    double dx = l.input_needs_grad ? static_cast<double>(l.in.numel()) : 0;
    if (l.op == UNetOp::concat) dx = dy;  // both parts of dy come back as gradients
    if (auto it = pending_skip.find(static_cast<int>(k)); it != pending_skip.end()) {
      pending -= it->second;  // added into this layer's dy
      pending_skip.erase(it);
    }
    peak = std::max(peak, kept + dy + dx + pending);
    if (l.op == UNetOp::concat) {
      const double skip = static_cast<double>(layers[static_cast<size_t>(l.skip)].out.numel());
      pending_skip[l.skip] += skip;
      pending += skip;
    }
    kept -= dy;  // this layer's output is no longer needed
  }
  return peak;
}

}  // namespace

UNetPlan plan_unet(const NetworkConfig& net, const Shape& input, int64_t out_channels, int64_t global_batch) {
  PDEGEN_CHECK(input.rank() == 3 || input.rank() == 4,
               "U-Net input must be [C, H, W] or [C, D, H, W], got {}", input.str());
  PDEGEN_CHECK(net.depth >= 1 && net.base_channels >= 1 && net.channel_multiplier >= 1 &&
                   net.convs_per_level >= 1 && net.kernel_size >= 1 && net.kernel_size % 2 == 1 &&
                   global_batch >= 1,
               "invalid network settings (the deck reader should have rejected them)");
  const int64_t factor = int64_t{1} << std::min(net.depth - 1, 62);
  for (int i = 1; i < input.rank(); ++i)
    if (input[i] % factor != 0)
      throw UserError(fmt::format("grid extent {} of the U-Net input {} is not divisible by 2^(depth-1) = {}",
                                  input[i], input.str(), factor));

  // Channels per level, checked before they can overflow.
  std::vector<int64_t> channels;
  int64_t c = net.base_channels;
  for (int i = 0; i < net.depth; ++i) {
    if (c > (int64_t{1} << 20))
      throw UserError(
          fmt::format("network: level {} would have {} channels (base_channels {} x "
                      "channel_multiplier {}^{}); more than 2^20 is not a sensible U-Net",
                      i, c, net.base_channels, net.channel_multiplier, i));
    channels.push_back(c);
    c *= net.channel_multiplier;
  }

  UNetPlan plan;
  plan.spatial_dims = input.rank() - 1;
  plan.input = input;
  plan.global_batch = global_batch;
  const bool bias = net.norm == NormKind::none;
  PlanBuilder b(plan, input);

  std::vector<int> skips(static_cast<size_t>(net.depth), -1);
  for (int i = 0; i < net.depth; ++i) {
    if (i > 0) {
      const std::string name = fmt::format("down{}", i - 1);
      if (net.downsample == DownsampleKind::maxpool)
        b.max_pool(name, i);
      else
        b.conv(name, i, channels[static_cast<size_t>(i - 1)], 2, 2, bias);
    }
    conv_block(b, net, fmt::format("enc{}", i), i, channels[static_cast<size_t>(i)]);
    skips[static_cast<size_t>(i)] = b.last();
  }
  for (int i = net.depth - 2; i >= 0; --i) {
    const int64_t ci = channels[static_cast<size_t>(i)];
    if (net.upsample == UpsampleKind::transposed_conv) {
      b.conv_transpose(fmt::format("dec{}.up", i), i, ci, bias);
    } else {
      b.upsample_nearest(fmt::format("dec{}.resize", i), i);
      b.conv(fmt::format("dec{}.up", i), i, ci, 3, 1, bias);
    }
    b.concat(fmt::format("dec{}.concat", i), i, skips[static_cast<size_t>(i)]);
    conv_block(b, net, fmt::format("dec{}", i), i, ci);
  }
  b.conv("head", 0, out_channels, 1, 1, true);
  plan.output = b.shape();

  for (const auto& l : plan.layers) {
    plan.parameters += l.parameters;
    plan.forward_flops_per_sample += l.flops.forward;
    plan.backward_flops_per_sample += l.flops.backward();
  }
  const double batch = static_cast<double>(global_batch);
  plan.flops_per_step = (plan.forward_flops_per_sample + plan.backward_flops_per_sample) * batch;
  plan.peak_activation_bytes = static_cast<int64_t>(peak_activation_values(plan) * batch * 4);
  return plan;
}

UNetPlan plan_unet(const Deck& deck) {
  const Shape input = sample_shape(deck.problem);
  const int64_t factor = int64_t{1} << std::min(deck.network.depth - 1, 62);
  const int halvings = deck.network.depth - 1;
  auto check = [&](std::string_view key, int64_t n) {
    if (n % factor == 0) return;
    const int64_t below = n / factor * factor, above = below + factor;
    throw UserError(fmt::format(
        "{} = {} is not divisible by 2^(network.depth - 1) = {}: a U-Net of network.depth {} halves the grid "
        "{} "
        "time{}; use a multiple of {}{} or a smaller network.depth",
        key, n, factor, deck.network.depth, halvings, halvings == 1 ? "" : "s", factor,
        below >= 3 ? fmt::format(" such as {} or {}", below, above) : fmt::format(" such as {}", above)));
  };
  check("problem.resolution", deck.problem.resolution);
  if (deck.problem.pde == PdeKind::burgers1d) check("problem.time_resolution", input[1]);
  return plan_unet(deck.network, input, 1, deck.training.batch_size);
}

std::vector<std::string> UNetPlan::layer_table() const {
  std::vector<std::string> rows;
  rows.push_back(fmt::format("{:>3}  {:<14} {:<20} {:<18} {:<18} {:>10} {:>11} {:>11}", "#", "layer", "kind",
                             "input", "output", "params", "MFLOP fwd", "MFLOP bwd"));
  for (size_t i = 0; i < layers.size(); ++i) {
    const auto& l = layers[i];
    std::string kind(l.kind());
    if (l.op == UNetOp::conv || l.op == UNetOp::conv_transpose || l.op == UNetOp::max_pool)
      kind += fmt::format(" {}{}{}", l.kernel, l.stride > 1 ? fmt::format("/{}", l.stride) : "",
                          l.bias ? "+b" : "");
    std::string inputs = l.in.str();
    if (l.op == UNetOp::concat) inputs += fmt::format("+#{}", l.skip);
    rows.push_back(fmt::format("{:>3}  {:<14} {:<20} {:<18} {:<18} {:>10} {:>11.2f} {:>11.2f}", i, l.name,
                               kind, inputs, l.out.str(), l.parameters, l.flops.forward * 1e-6,
                               l.flops.backward() * 1e-6));
  }
  return rows;
}

}  // namespace pdegen

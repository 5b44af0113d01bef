// The graph executor (see graph_network.hpp): layers built from the plan, the forward walk holding
// each output until its last reader, and the reverse walk that sums each tensor's gradients from
// its readers.
#include "nn/graph_network.hpp"

#include <functional>
#include <memory>

#include "backend/cpu/parallel.hpp"
#ifdef PDEGEN_HAVE_CUDA
#include "core/device_allocator.hpp"
#endif
#include "nn/activation.hpp"
#include "nn/concat.hpp"
#include "nn/conv.hpp"
#include "nn/conv_transpose.hpp"
#include "nn/instance_norm.hpp"
#include "nn/pool.hpp"
#include "nn/upsample.hpp"

namespace pdegen {

namespace {

// What a layer kept for backward can only be dropped by the layer. A layer type that offers
// release_saved() (convolutions, transposed convolutions, activations) is asked to right after its
// backward (and after an eval-mode forward), so that activations are freed during backward instead
// of at the next forward; the others keep their tensors until then. (The Layer interface has no such
// member yet; this picks it up once it does.)
template <class L>
std::function<void()> release_hook(L& layer) {
  if constexpr (requires { layer.release_saved(); })
    return [&layer] { layer.release_saved(); };
  else
    return {};
}

// a + b in b's layout, written into a's memory when a is laid out like b. `a` must be a tensor the
// caller owns (a gradient just returned by a layer), never an input someone else still reads.
Tensor add_gradients(Tensor a, const Tensor& b) {
  PDEGEN_CHECK(a.shape() == b.shape(),
               "gradient {} of a tensor read twice does not match its other gradient {}", a.describe(),
               b.describe());
  if (a.device() != Device::cpu) {
    PDEGEN_CHECK(a.dtype() == b.dtype() && a.channel_block() == b.channel_block() && a.device() == b.device(),
                 "device gradients {} and {} of one tensor differ in type or layout", a.describe(),
                 b.describe());
#ifdef PDEGEN_HAVE_CUDA
    cuda::add_elements(a.raw(), b.raw(), a.dtype(), a.numel());
#endif
    return a;
  }
  a = to_channel_block(a, b.channel_block());
  with_storage_type(a.dtype(), [&](auto storage) {
    using T = decltype(storage);
    T* out = a.data<T>();
    const T* in = b.data<T>();
    cpu::parallel_for(a.numel(),
                      [=](int64_t i) { out[i] = from_float<T>(to_float(out[i]) + to_float(in[i])); });
  });
  return a;
}

Shape batched(const Shape& per_sample, int64_t batch) {
  Shape s{batch};
  for (int64_t d : per_sample) s.push_back(d);
  return s;
}

// Conv and ConvTranspose take the same geometry from a plan entry.
template <class Config>
Config conv_config(const PlanLayer& l, int ndim) {
  Config c;
  c.ndim = ndim;
  c.in_channels = l.in[0];
  c.out_channels = l.out[0];
  c.kernel = l.kernel;
  c.stride = l.stride;
  c.padding = l.padding;
  c.bias = l.bias;
  return c;
}

}  // namespace

struct GraphNetwork::Node {
  std::unique_ptr<Layer> layer;  // every op but concat
  // A concat of n tensors as n - 1 two-way concats, left to right (a copy: the values are the same
  // for any grouping).
  std::vector<Concat> concats;
  BatchNorm* batch_norm = nullptr;
  Activation* activation = nullptr;
  // Forward overwrites its input (an activation that is the only reader of a conv, transposed conv
  // or norm output, which that layer does not keep), so the two outputs share one tensor.
  bool in_place = false;
  std::function<void()> release_saved;  // empty when the layer cannot drop its saved tensors

  template <class L>
  L& set(std::unique_ptr<L> l) {
    L& ref = *l;
    release_saved = release_hook(ref);
    layer = std::move(l);
    return ref;
  }
};

// The layer of plan entry `l`, its parameters registered.
void GraphNetwork::make_layer(Node& node, const PlanLayer& l, int ndim, ParameterRegistry& registry) {
  switch (l.op) {
    case LayerOp::conv:
      node.set(std::make_unique<Conv>(l.name, conv_config<ConvConfig>(l, ndim), registry))
          .set_frees_input_in_backward(true);
      break;
    case LayerOp::conv_transpose:
      node.set(std::make_unique<ConvTranspose>(l.name, conv_config<ConvTransposeConfig>(l, ndim), registry))
          .set_frees_input_in_backward(true);
      break;
    case LayerOp::norm:
      make_norm(node, l, registry);
      break;
    case LayerOp::activation:
      node.activation = &node.set(std::make_unique<Activation>(l.activation));
      break;
    case LayerOp::max_pool:
    case LayerOp::avg_pool: {
      PoolConfig c;
      c.ndim = ndim;
      c.kernel = l.kernel;
      c.stride = l.stride;
      c.padding = l.padding;
      if (l.op == LayerOp::max_pool)
        node.set(std::make_unique<MaxPool>(c));
      else
        node.set(std::make_unique<AvgPool>(c));
      break;
    }
    case LayerOp::upsample_nearest:
      node.set(std::make_unique<Upsample>(ndim));
      break;
    case LayerOp::concat:
      node.concats.resize(l.inputs.size() - 1);
      break;
  }
}

void GraphNetwork::make_norm(Node& node, const PlanLayer& l, ParameterRegistry& registry) {
  if (l.norm == NormKind::batch) {
    BatchNormConfig c;
    c.channels = l.in[0];
    c.affine = true;
    node.batch_norm = &node.set(std::make_unique<BatchNorm>(l.name, c, registry));
  } else {
    PDEGEN_CHECK(l.norm == NormKind::instance, "network layer '{}': a norm layer of kind none", l.name);
    InstanceNormConfig c;
    c.channels = l.in[0];
    c.affine = true;
    node.set(std::make_unique<InstanceNorm>(l.name, c, registry));
  }
}

GraphNetwork::GraphNetwork(const NetworkPlan& plan, ParameterRegistry& registry) : plan_(plan) {
  const int64_t parameters_before = registry.count();
  const size_t n = plan_.layers.size();
  PDEGEN_CHECK(n > 0, "a network plan without layers");
  nodes_.resize(n);
  last_reader_.assign(n, -1);
  for (size_t k = 0; k < n; ++k) {
    const PlanLayer& l = plan_.layers[k];
    PDEGEN_CHECK(l.op == LayerOp::concat ? l.inputs.size() >= 2 : l.inputs.size() == 1,
                 "network layer '{}' ({}) reads {} tensors", l.name, l.kind(), l.inputs.size());
    for (int i : l.inputs) {
      PDEGEN_CHECK(i >= PlanLayer::network_input && i < static_cast<int>(k),
                   "network layer '{}' reads layer {}, which is not an earlier one", l.name, i);
      if (i != PlanLayer::network_input) last_reader_[static_cast<size_t>(i)] = static_cast<int>(k);
    }
    make_layer(nodes_[k], l, plan_.spatial_dims, registry);
    check_layer(k);
    if (nodes_[k].layer) nodes_[k].layer->set_needs_input_grad(l.input_needs_grad);
  }
  for (size_t k = 0; k + 1 < n; ++k)
    PDEGEN_CHECK(last_reader_[k] >= 0, "network layer '{}': nothing reads its output", plan_.layers[k].name);
  choose_in_place();
  PDEGEN_CHECK(registry.count() - parameters_before == plan_.parameters,
               "the network's layers registered {} parameters, the plan counts {}",
               registry.count() - parameters_before, plan_.parameters);
}

GraphNetwork::~GraphNetwork() = default;

// The plan and the layers must agree on every shape, or one of them is wrong.
void GraphNetwork::check_layer(size_t k) const {
  const PlanLayer& l = plan_.layers[k];
  const Node& node = nodes_[k];
  Shape out;
  if (node.layer) {
    PDEGEN_CHECK(plan_.shape_of(l.inputs[0]) == l.in, "network layer '{}': input {}, the plan says {}",
                 l.name, plan_.shape_of(l.inputs[0]).str(), l.in.str());
    out = node.layer->output_shape(batched(l.in, 1));
    PDEGEN_CHECK(node.layer->kind() == l.kind(), "network layer '{}' is a {}, the plan says {}", l.name,
                 node.layer->kind(), l.kind());
  } else {
    out = batched(plan_.shape_of(l.inputs[0]), 1);
    for (size_t c = 0; c < node.concats.size(); ++c)
      out = node.concats[c].output_shape(out, batched(plan_.shape_of(l.inputs[c + 1]), 1));
  }
  PDEGEN_CHECK(out == batched(l.out, 1),
               "network layer '{}' ({}): the layer makes {} of {}, the plan says {}", l.name, l.kind(),
               out.str(), l.in.str(), l.out.str());
}

void GraphNetwork::choose_in_place() {
  // Conv, transposed conv and the norms keep their input, never their output: an activation that is
  // the only reader of that output can overwrite it.
  const auto readers = plan_.readers();
  for (size_t k = 0; k < nodes_.size(); ++k) {
    Node& node = nodes_[k];
    if (!node.activation) continue;
    const int j = plan_.layers[k].inputs[0];
    if (j == PlanLayer::network_input || readers[static_cast<size_t>(j)].size() != 1) continue;
    const LayerOp before = plan_.layers[static_cast<size_t>(j)].op;
    node.in_place = node.activation->runs_in_place() &&
                    (before == LayerOp::conv || before == LayerOp::conv_transpose || before == LayerOp::norm);
  }
  // A ReLU that keeps only sign bits leaves its output to its readers alone: a conv, which frees it
  // in backward before allocating dx (so dx reuses the block), a down-sampler (which keeps nothing
  // of it) or a concat (which copies it), so a tensor read again later is freed as soon as its last
  // reader has run instead of living until its producer's backward.
  for (Node& node : nodes_)
    if (node.activation && node.activation->derivative_is_sign_only())
      node.activation->set_keeps_sign_only(true);
}

Tensor GraphNetwork::run_forward(size_t k, const Tensor& x, const std::vector<Tensor>& outputs, Mode mode) {
  Node& node = nodes_[k];
  const auto& inputs = plan_.layers[k].inputs;
  auto input = [&](size_t i) -> const Tensor& {
    return inputs[i] == PlanLayer::network_input ? x : outputs[static_cast<size_t>(inputs[i])];
  };
  if (node.in_place) return node.activation->forward_in_place(input(0), mode);
  if (k == nodes_.size() - 1 && node.layer && input(0).dtype() != DType::f32) {
    // The head runs in fp32 under mixed precision: its output is the solution itself, and rounding
    // that to 16 bits (bf16: 2^-9 relative) would put a floor under the error at the size of the
    // accuracy targets. It is one small layer; its input is widened and its dx narrowed back.
    head_input_dtype_ = input(0).dtype();
    return node.layer->forward(to_dtype(input(0), DType::f32), mode);
  }
  if (node.layer) return node.layer->forward(input(0), mode);
  Tensor y = node.concats[0].forward(input(0), input(1));  // in the plan's channel order
  for (size_t c = 1; c < node.concats.size(); ++c) y = node.concats[c].forward(y, input(c + 1));
  return y;
}

Tensor GraphNetwork::forward(const Tensor& x, Mode mode) {
  PDEGEN_CHECK(x.rank() == plan_.input.rank() + 1 && x.dim(1) == plan_.input[0],
               "the network takes samples of {} channels on a {}D grid (planned for {}), got input {}",
               plan_.input[0], plan_.spatial_dims, plan_.input.str(), x.describe());
  batch_ = 0;  // an interrupted forward leaves nothing for backward
  head_input_dtype_ = DType::f32;
  // Each output, held until its last reader has run (the last layer's until it is returned).
  std::vector<Tensor> outputs(nodes_.size());
  for (size_t k = 0; k < nodes_.size(); ++k) {
    Tensor y = run_forward(k, x, outputs, mode);
    for (int i : plan_.layers[k].inputs)
      if (i != PlanLayer::network_input && last_reader_[static_cast<size_t>(i)] == static_cast<int>(k))
        outputs[static_cast<size_t>(i)] = Tensor();
    outputs[k] = std::move(y);
    if (mode == Mode::eval && nodes_[k].release_saved) nodes_[k].release_saved();
  }
  if (mode == Mode::train) batch_ = x.dim(0), output_shape_ = outputs.back().shape();
  output_dtype_ = outputs.back().dtype();
  return to_plain(outputs.back());
}

// Layer k's backward for the gradient g of its output; what it returns for each input is added to
// that tensor's gradient in `grads` (the network input's is dropped).
void GraphNetwork::run_backward(size_t k, Tensor g, bool g_is_ours, std::vector<Tensor>& grads) {
  Node& node = nodes_[k];
  const auto& inputs = plan_.layers[k].inputs;
  std::vector<Tensor> dx(inputs.size());
  if (!node.concats.empty()) {
    for (size_t c = node.concats.size(); c-- > 0;) {
      auto [d_first, d_last] = node.concats[c].backward(g);
      dx[c + 1] = std::move(d_last);
      g = std::move(d_first);
    }
    dx[0] = std::move(g);
  } else if (node.activation && g_is_ours) {
    dx[0] = node.activation->backward_in_place(g);
  } else {
    dx[0] = node.layer->backward(g);  // undefined from a layer that needs no input gradient
    if (k == nodes_.size() - 1 && dx[0].defined()) dx[0] = to_dtype(dx[0], head_input_dtype_);
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i] == PlanLayer::network_input || !dx[i].defined()) continue;
    Tensor& sum = grads[static_cast<size_t>(inputs[i])];
    // The gradient that arrived first is added to, in the layout of the one arriving now.
    sum = sum.defined() ? add_gradients(std::move(sum), dx[i]) : std::move(dx[i]);
  }
}

void GraphNetwork::backward(const Tensor& dy) {
  PDEGEN_CHECK(batch_ > 0,
               "network backward without a train-mode forward since the last backward (eval mode keeps "
               "nothing for it)");
  PDEGEN_CHECK(dy.shape() == output_shape_ && dy.dtype() == output_dtype_,
               "network backward got dy {}, the forward produced {} {}", dy.describe(),
               dtype_name(output_dtype_), output_shape_.str());
  batch_ = 0;  // layers may drop their saved tensors below: one backward per forward
  // The gradient of each layer's output, summed over the readers that have run their backward.
  std::vector<Tensor> grads(nodes_.size());
  const size_t last = nodes_.size() - 1;
  for (size_t k = nodes_.size(); k-- > 0;) {
    const TimelineScope event(timeline_, plan_.layers[k].name.c_str());
    // dy is the caller's; every gradient a layer returns is a fresh tensor, taken out of `grads` so
    // that it is freed as soon as the layer is done with it.
    Tensor g;
    if (k == last)
      g = dy;
    else
      g = std::move(grads[k]);
    run_backward(k, std::move(g), k != last, grads);
    if (nodes_[k].release_saved) nodes_[k].release_saved();
  }
}

std::vector<std::pair<std::string, Tensor>> GraphNetwork::buffers() {
  std::vector<std::pair<std::string, Tensor>> out;
  for (size_t k = 0; k < nodes_.size(); ++k) {
    BatchNorm* bn = nodes_[k].batch_norm;
    if (!bn) continue;
    out.emplace_back(plan_.layers[k].name + ".running_mean", bn->running_mean());
    out.emplace_back(plan_.layers[k].name + ".running_var", bn->running_var());
  }
  return out;
}

void GraphNetwork::set_stats_allreduce(const StatsAllreduce& allreduce) {
  for (Node& node : nodes_)
    if (node.batch_norm) node.batch_norm->set_stats_allreduce(allreduce);
}

Flops GraphNetwork::flops(int64_t batch) const {
  Flops total;
  for (size_t k = 0; k < nodes_.size(); ++k) {
    const PlanLayer& l = plan_.layers[k];
    const Node& node = nodes_[k];
    Flops f;  // a concat moves memory and computes nothing
    if (node.layer) f = node.layer->flops(batched(l.in, batch));
    if (!l.input_needs_grad) f.backward_data = 0;
    total.forward += f.forward;
    total.backward_data += f.backward_data;
    total.backward_weights += f.backward_weights;
  }
  return total;
}

}  // namespace pdegen

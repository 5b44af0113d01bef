// The U-Net generator (see unet.hpp): layers built from the plan, the forward walk with its skip
// tensors, and the reverse walk that routes the concat gradients.
#include "nn/unet.hpp"

#include <functional>
#include <memory>

#include "backend/cpu/parallel.hpp"
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
  PDEGEN_CHECK(a.shape() == b.shape(), "U-Net skip gradient {} does not match the layer's gradient {}",
               a.describe(), b.describe());
  a = to_channel_block(a, b.channel_block());
  float* out = a.data<float>();
  const float* in = b.data<float>();
  cpu::parallel_for(a.numel(), [=](int64_t i) { out[i] += in[i]; });
  return a;
}

}  // namespace

struct UNet::Node {
  std::unique_ptr<Layer> layer;    // every op but concat
  std::unique_ptr<Concat> concat;  // concat (two inputs, so not a Layer)
  BatchNorm* batch_norm = nullptr;
  Activation* activation = nullptr;
  // Forward overwrites its input (an activation right after a conv, transposed conv or norm, whose
  // output nobody else keeps), so conv output and activation output share one tensor.
  bool in_place = false;
  std::function<void()> release_saved;  // empty when the layer cannot drop its saved tensors
  bool is_skip_source = false;          // its output is read again by a later concat

  template <class L>
  L& set(std::unique_ptr<L> l) {
    L& ref = *l;
    release_saved = release_hook(ref);
    layer = std::move(l);
    return ref;
  }
};

namespace {
// Conv and ConvTranspose take the same geometry from a plan entry.
template <class Config>
Config conv_config(const UNetLayer& l, int ndim) {
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

UNet::UNet(const UNetPlan& plan, ParameterRegistry& registry) : plan_(plan) {
  const int ndim = plan_.spatial_dims;
  const int64_t parameters_before = registry.count();
  nodes_.resize(plan_.layers.size());
  for (size_t k = 0; k < plan_.layers.size(); ++k) {
    const UNetLayer& l = plan_.layers[k];
    Node& node = nodes_[k];
    switch (l.op) {
      case UNetOp::conv:
        node.set(std::make_unique<Conv>(l.name, conv_config<ConvConfig>(l, ndim), registry))
            .set_frees_input_in_backward(true);
        break;
      case UNetOp::conv_transpose:
        node.set(std::make_unique<ConvTranspose>(l.name, conv_config<ConvTransposeConfig>(l, ndim), registry))
            .set_frees_input_in_backward(true);
        break;
      case UNetOp::norm:
        if (l.norm == NormKind::batch) {
          BatchNormConfig c;
          c.channels = l.in[0];
          c.affine = true;
          node.batch_norm = &node.set(std::make_unique<BatchNorm>(l.name, c, registry));
        } else {
          PDEGEN_CHECK(l.norm == NormKind::instance, "U-Net layer '{}': a norm layer of kind none", l.name);
          InstanceNormConfig c;
          c.channels = l.in[0];
          c.affine = true;
          node.set(std::make_unique<InstanceNorm>(l.name, c, registry));
        }
        break;
      case UNetOp::activation:
        node.activation = &node.set(std::make_unique<Activation>(l.activation));
        break;
      case UNetOp::max_pool: {
        PoolConfig c;
        c.ndim = ndim;
        c.kernel = l.kernel;
        c.stride = l.stride;
        c.padding = l.padding;
        node.set(std::make_unique<MaxPool>(c));
        break;
      }
      case UNetOp::upsample_nearest:
        node.set(std::make_unique<Upsample>(ndim));
        break;
      case UNetOp::concat:
        PDEGEN_CHECK(l.skip >= 0 && static_cast<size_t>(l.skip) < k, "U-Net concat '{}' reads layer {}",
                     l.name, l.skip);
        node.concat = std::make_unique<Concat>();
        nodes_[static_cast<size_t>(l.skip)].is_skip_source = true;
        break;
    }

    // The plan and the layers must agree on every shape, or one of them is wrong.
    const Shape out = node.concat
                          ? node.concat->output_shape(
                                batched(plan_.layers[static_cast<size_t>(l.skip)].out, 1), batched(l.in, 1))
                          : node.layer->output_shape(batched(l.in, 1));
    PDEGEN_CHECK(out == batched(l.out, 1),
                 "U-Net layer '{}' ({}): the layer makes {} of {}, the plan says {}", l.name, l.kind(),
                 out.str(), l.in.str(), l.out.str());
    if (node.layer) {
      PDEGEN_CHECK(node.layer->kind() == l.kind(), "U-Net layer '{}' is a {}, the plan says {}", l.name,
                   node.layer->kind(), l.kind());
      node.layer->set_needs_input_grad(l.input_needs_grad);
    }
  }
  // Conv, transposed conv and the norms keep their input, never their output, and the forward walk
  // holds the output only until the next layer has run, unless a concat reads it later.
  for (size_t k = 1; k < nodes_.size(); ++k) {
    const UNetOp before = plan_.layers[k - 1].op;
    nodes_[k].in_place =
        nodes_[k].activation && nodes_[k].activation->runs_in_place() && !nodes_[k - 1].is_skip_source &&
        (before == UNetOp::conv || before == UNetOp::conv_transpose || before == UNetOp::norm);
  }
  // A ReLU that keeps only sign bits leaves its output to its readers alone: the next conv, which
  // frees it in backward before allocating dx (so dx reuses the block), or for a skip source the
  // down-sampler (which keeps nothing of it) and the concat (which copies it), so it is freed as soon
  // as the concat has run instead of living until the decoder's backward.
  for (Node& node : nodes_)
    if (node.activation && node.activation->derivative_is_sign_only())
      node.activation->set_keeps_sign_only(true);
  PDEGEN_CHECK(registry.count() - parameters_before == plan_.parameters,
               "the U-Net's layers registered {} parameters, the plan counts {}",
               registry.count() - parameters_before, plan_.parameters);
}

UNet::~UNet() = default;

Shape UNet::batched(const Shape& per_sample, int64_t batch) const {
  Shape s{batch};
  for (int64_t d : per_sample) s.push_back(d);
  return s;
}

Tensor UNet::forward(const Tensor& x, Mode mode) {
  PDEGEN_CHECK(x.rank() == plan_.input.rank() + 1 && x.shape() == batched(plan_.input, x.dim(0)),
               "the U-Net was planned for samples of shape {}, got input {}", plan_.input.str(),
               x.describe());
  batch_ = 0;  // an interrupted forward leaves nothing for backward
  // Outputs that a later concat reads, held only until it has.
  std::vector<Tensor> skips(nodes_.size());
  Tensor h = x;
  for (size_t k = 0; k < nodes_.size(); ++k) {
    Node& node = nodes_[k];
    if (node.concat) {
      Tensor& skip = skips[static_cast<size_t>(plan_.layers[k].skip)];
      h = node.concat->forward(skip, h);  // the encoder's channels first
      skip = Tensor();
    } else if (node.in_place) {
      h = node.activation->forward_in_place(h, mode);
    } else {
      h = node.layer->forward(h, mode);
    }
    if (node.is_skip_source) skips[k] = h;
    if (mode == Mode::eval && node.release_saved) node.release_saved();
  }
  if (mode == Mode::train) batch_ = x.dim(0);
  return to_plain(h);
}

void UNet::backward(const Tensor& dy) {
  PDEGEN_CHECK(batch_ > 0,
               "U-Net backward without a train-mode forward since the last backward (eval mode keeps nothing "
               "for it)");
  PDEGEN_CHECK(dy.shape() == batched(plan_.output, batch_) && dy.dtype() == DType::f32,
               "U-Net backward got dy {}, the forward produced {} fp32 samples of shape {}", dy.describe(),
               batch_, plan_.output.str());
  batch_ = 0;  // layers may drop their saved tensors below: one backward per forward
  // Gradients for skip sources, from their concat, waiting for that layer's backward.
  std::vector<Tensor> skip_grads(nodes_.size());
  Tensor g = dy;
  bool g_is_ours = false;  // dy is the caller's; every gradient a layer returns is a fresh tensor
  for (size_t k = nodes_.size(); k-- > 0;) {
    Node& node = nodes_[k];
    const TimelineScope event(timeline_, plan_.layers[k].name.c_str());
    if (skip_grads[k].defined()) g = add_gradients(std::move(skip_grads[k]), g);
    if (node.concat) {
      auto [d_skip, d_up] = node.concat->backward(g);
      Tensor& pending = skip_grads[static_cast<size_t>(plan_.layers[k].skip)];
      pending = pending.defined() ? add_gradients(std::move(d_skip), pending) : std::move(d_skip);
      g = std::move(d_up);
    } else if (node.activation && g_is_ours) {
      g = node.activation->backward_in_place(g);
    } else {
      g = node.layer->backward(g);  // undefined from a layer that needs no input gradient
    }
    g_is_ours = true;
    if (node.release_saved) node.release_saved();
  }
}

std::vector<std::pair<std::string, Tensor>> UNet::buffers() {
  std::vector<std::pair<std::string, Tensor>> out;
  for (size_t k = 0; k < nodes_.size(); ++k) {
    BatchNorm* bn = nodes_[k].batch_norm;
    if (!bn) continue;
    out.emplace_back(plan_.layers[k].name + ".running_mean", bn->running_mean());
    out.emplace_back(plan_.layers[k].name + ".running_var", bn->running_var());
  }
  return out;
}

void UNet::set_stats_allreduce(const StatsAllreduce& allreduce) {
  for (Node& node : nodes_)
    if (node.batch_norm) node.batch_norm->set_stats_allreduce(allreduce);
}

Flops UNet::flops(int64_t batch) const {
  Flops total;
  for (size_t k = 0; k < nodes_.size(); ++k) {
    const UNetLayer& l = plan_.layers[k];
    const Node& node = nodes_[k];
    Flops f = node.concat ? node.concat->flops(batched(plan_.layers[static_cast<size_t>(l.skip)].out, batch),
                                               batched(l.in, batch))
                          : node.layer->flops(batched(l.in, batch));
    if (!l.input_needs_grad) f.backward_data = 0;
    total.forward += f.forward;
    total.backward_data += f.backward_data;
    total.backward_weights += f.backward_weights;
  }
  return total;
}

}  // namespace pdegen

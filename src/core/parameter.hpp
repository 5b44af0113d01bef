// Parameter registry: every trainable tensor of a model lives in ONE flat value buffer and ONE flat
// gradient buffer, laid out in backward order (the reverse of registration, which follows forward
// execution), each parameter aligned to 64 bytes. The optimizer runs over the flat buffers; the
// gradient reducer cuts the gradient buffer into contiguous buckets without copies, and learns that
// a parameter's gradient is complete through grad_ready().
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/tensor.hpp"

namespace pdegen {

// How a parameter starts: a constant, or uniform on [-bound, bound] from the counter-based RNG
// (the same values for the same seed on every rank and backend).
struct ParamInit {
  enum class Kind { constant, uniform } kind = Kind::constant;
  double value = 0;  // constant value, or the uniform bound
  static ParamInit constant_value(double v) { return {Kind::constant, v}; }
  static ParamInit uniform(double bound) { return {Kind::uniform, bound}; }
};

struct Parameter {
  std::string name;
  Shape shape;
  ParamInit init;
  int64_t offset = 0;  // element offset in the flat buffers (same for values and gradients)
  Tensor value;        // views into the flat buffers, valid after finalize()
  Tensor grad;
};

class ParameterRegistry {
 public:
  using Id = int;
  static constexpr int64_t align_elements = 16;  // 64 bytes of fp32

  // Registration in forward order; names must be unique (they key checkpoints).
  Id add(std::string name, const Shape& shape, ParamInit init);
  // Lays out and allocates the flat buffers; values are set from the inits with `seed`.
  void finalize(uint64_t seed, Device device = Device::cpu);
  bool finalized() const { return finalized_; }

  const Parameter& param(Id id) const { return params_.at(static_cast<size_t>(id)); }
  const Tensor& value(Id id) const;
  const Tensor& grad(Id id) const;
  const std::vector<Parameter>& params() const { return params_; }
  // Ids in the order backward produces their gradients (= layout order of the flat buffers).
  std::vector<Id> backward_order() const;

  const Tensor& flat_values() const { return values_; }
  const Tensor& flat_grads() const { return grads_; }
  int64_t count() const;  // trainable scalars, without alignment padding
  void zero_grads();

  // Called by a layer when it has finished accumulating the gradient of `id` in this backward.
  void grad_ready(Id id) const {
    if (on_grad_ready_) on_grad_ready_(id);
  }
  void set_grad_ready_hook(std::function<void(Id)> hook) { on_grad_ready_ = std::move(hook); }

 private:
  std::vector<Parameter> params_;
  Tensor values_, grads_;
  bool finalized_ = false;
  std::function<void(Id)> on_grad_ready_;
};

}  // namespace pdegen

// Parameter registry (see parameter.hpp).
#include "core/parameter.hpp"

#include <cstring>

#include "core/rng.hpp"

namespace pdegen {

ParameterRegistry::Id ParameterRegistry::add(std::string name, const Shape& shape, ParamInit init) {
  PDEGEN_CHECK(!finalized_, "parameter '{}' added after the registry was finalized", name);
  for (const auto& p : params_) PDEGEN_CHECK(p.name != name, "duplicate parameter name '{}'", name);
  params_.push_back(Parameter{std::move(name), shape, init, 0, {}, {}});
  return static_cast<Id>(params_.size() - 1);
}

std::vector<ParameterRegistry::Id> ParameterRegistry::backward_order() const {
  std::vector<Id> order;
  for (Id id = static_cast<Id>(params_.size()) - 1; id >= 0; --id) order.push_back(id);
  return order;
}

void ParameterRegistry::finalize(uint64_t seed, Device device) {
  PDEGEN_CHECK(!finalized_, "registry finalized twice");
  int64_t total = 0;
  for (Id id : backward_order()) {
    auto& p = params_[static_cast<size_t>(id)];
    p.offset = total;
    total += (p.shape.numel() + align_elements - 1) / align_elements * align_elements;
  }
  // Initial values are drawn on the host, so every backend starts from the same numbers, then
  // copied once to the device (Tensor::zeros refuses a device this binary cannot use).
  Tensor host_values = Tensor::zeros(Shape{total}, DType::f32, Device::cpu);
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& p = params_[i];
    float* v = host_values.data<float>() + p.offset;
    const int64_t n = p.shape.numel();
    if (p.init.kind == ParamInit::Kind::constant) {
      for (int64_t j = 0; j < n; ++j) v[j] = static_cast<float>(p.init.value);
    } else {
      // Index by (registration id, element) so adding a layer later does not reshuffle the others.
      const uint64_t base = static_cast<uint64_t>(i) << 40;
      for (int64_t j = 0; j < n; ++j)
        v[j] = static_cast<float>(
            (2 * random_uniform(seed, rng_stream::weight_init, base + static_cast<uint64_t>(j)) - 1) *
            p.init.value);
    }
  }
  values_ = host_values.to(device);
  grads_ = Tensor::zeros(Shape{total}, DType::f32, device);
  for (auto& p : params_) {
    p.value = Tensor::view(values_.data<float>() + p.offset, p.shape, DType::f32, device);
    p.grad = Tensor::view(grads_.data<float>() + p.offset, p.shape, DType::f32, device);
  }
  finalized_ = true;
}

const Tensor& ParameterRegistry::value(Id id) const {
  PDEGEN_CHECK(finalized_, "parameter values read before finalize()");
  return params_.at(static_cast<size_t>(id)).value;
}

const Tensor& ParameterRegistry::grad(Id id) const {
  PDEGEN_CHECK(finalized_, "parameter gradients read before finalize()");
  return params_.at(static_cast<size_t>(id)).grad;
}

int64_t ParameterRegistry::count() const {
  int64_t n = 0;
  for (const auto& p : params_) n += p.shape.numel();
  return n;
}

void ParameterRegistry::zero_grads() {
  if (grads_.numel() == 0) return;
  if (grads_.device() == Device::cpu)
    std::memset(grads_.raw(), 0, grads_.nbytes());
  else
    grads_.fill(0);  // stream-ordered on the device
}

}  // namespace pdegen

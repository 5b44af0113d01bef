// Device-parameterised versions of testing.hpp's helpers: the same recipes (fp64 references,
// central differences), with inputs made on the host and moved to the device under test, and results
// moved back before they are compared. On Device::cpu they are testing.hpp's helpers exactly.
#pragma once

#include <string>

#include "backends.hpp"
#include "testing.hpp"

namespace pdegen::testing {

// tensor_from on the host, then moved to `device` in the layout asked for (the GPU kernels of these
// layers index through the layout, so blocked inputs are tested there too; backends.hpp's
// device_tensor gives the plain layout the GPU network uses). host_values is backends.hpp's.
inline Tensor tensor_on(Device device, const Vec& v, const Shape& shape, int channel_block = 1) {
  return tensor_from(v, shape, channel_block).to(device);
}

// Overwrites a plain fp32 tensor on any device (a registry value) with v.
inline void set_values_on(const Tensor& t, const Vec& v) {
  Tensor dst = t;
  dst.copy_from(tensor_from(v, t.shape()));
}

// NormFixture with its parameters on `device` (the registry finalized there).
template <class L>
struct DeviceNormFixture {
  Device device;
  ParameterRegistry registry;
  L layer;
  std::string name;
  Vec gamma, beta;
  template <class Config>
  DeviceNormFixture(Device on, const std::string& layer_name, const Config& config)
      : device(on),
        layer(layer_name, config, registry),
        name(layer_name),
        gamma(static_cast<size_t>(config.channels), 1.0),
        beta(static_cast<size_t>(config.channels), 0.0) {
    registry.finalize(7, device);
    if (config.affine) {
      gamma = random_vec(gamma.size(), 11, 0.5, 1.5);
      beta = random_vec(beta.size(), 12);
      set_values_on(registry.value(param_id(registry, name + ".weight")), gamma);
      set_values_on(registry.value(param_id(registry, name + ".bias")), beta);
    }
  }
  Vec dgamma() const { return host_values(registry.grad(param_id(registry, name + ".weight"))); }
  Vec dbeta() const { return host_values(registry.grad(param_id(registry, name + ".bias"))); }
  Tensor input(const Vec& x, const NormCase& cs) const { return tensor_on(device, x, cs.shape, cs.block); }
};

// check_norm_forward on the fixture's device: y on that device, in the case's layout, matches the
// fp64 reference.
template <class Fixture>
void check_norm_forward_on(Fixture& f, const NormCase& cs, Mode mode, const Vec& x,
                           const NormReference& reference) {
  const Tensor y = f.layer.forward(f.input(x, cs), mode);
  CHECK(y.device() == f.device);
  CHECK(y.channel_block() == cs.block);
  CHECK(y.shape() == cs.shape);
  CHECK(rel_max_error(host_values(y), reference(x, f.gamma, f.beta)) < f32_tol);
}

// check_norm_backward on the fixture's device: dx, dgamma and dbeta against central differences.
template <class Fixture>
void check_norm_backward_on(Fixture& f, const NormCase& cs, Mode mode, const Vec& x, const Vec& w,
                            const NormReference& reference) {
  f.layer.forward(f.input(x, cs), mode);
  const Tensor dx = f.layer.backward(f.input(w, cs));
  CHECK(dx.device() == f.device);
  CHECK(dx.channel_block() == cs.block);
  const auto of_x = [&](const Vec& v) { return reference(v, f.gamma, f.beta); };
  CHECK(rel_max_error(host_values(dx), fd_gradient(of_x, x, w)) < 1e-4);
  if (cs.affine) {
    const auto of_gamma = [&](const Vec& g) { return reference(x, g, f.beta); };
    const auto of_beta = [&](const Vec& b) { return reference(x, f.gamma, b); };
    CHECK(rel_max_error(f.dgamma(), fd_gradient(of_gamma, f.gamma, w)) < 1e-4);
    CHECK(rel_max_error(f.dbeta(), fd_gradient(of_beta, f.beta, w)) < 1e-4);
  } else {
    CHECK(f.registry.params().empty());
  }
}

// Runs body(device) for every device under test, naming it in failure messages.
template <class F>
void for_each_device(F&& body) {
  for (Device device : test_devices()) {
    CAPTURE(device_name(device));
    body(device);
  }
}

}  // namespace pdegen::testing

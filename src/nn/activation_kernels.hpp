// Activation arithmetic shared by the CPU (OpenMP) and CUDA backends: forward value and the
// derivative expressed through whatever backward has at hand (input x and/or output y).
#pragma once

#include <cmath>

#include "core/hd.hpp"

namespace pdegen {

enum class ActivationKind { identity, relu, leaky_relu, tanh, silu, sigmoid };

PDEGEN_HD float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

PDEGEN_HD float activation_forward(ActivationKind k, float x, float alpha) {
  switch (k) {
    case ActivationKind::identity:
      return x;
    case ActivationKind::relu:
      return x > 0.0f ? x : 0.0f;
    case ActivationKind::leaky_relu:
      return x > 0.0f ? x : alpha * x;
    case ActivationKind::tanh:
      return tanhf(x);
    case ActivationKind::silu:
      return x * sigmoidf(x);
    case ActivationKind::sigmoid:
      return sigmoidf(x);
  }
  return x;
}

// dL/dx = dL/dy * f'(x); tanh and sigmoid use the stored output y (cheaper, no exp).
PDEGEN_HD float activation_backward(ActivationKind k, float x, float y, float dy, float alpha) {
  switch (k) {
    case ActivationKind::identity:
      return dy;
    case ActivationKind::relu:
      return x > 0.0f ? dy : 0.0f;
    case ActivationKind::leaky_relu:
      return x > 0.0f ? dy : alpha * dy;
    case ActivationKind::tanh:
      return dy * (1.0f - y * y);
    case ActivationKind::silu: {
      const float s = sigmoidf(x);
      return dy * s * (1.0f + x * (1.0f - s));
    }
    case ActivationKind::sigmoid:
      return dy * y * (1.0f - y);
  }
  return dy;
}

}  // namespace pdegen

// The activation functions by name: a deck choice (network.activation) and the template
// parameter of the activation kernels, so it lives below both config/ and nn/.
#pragma once

namespace pdegen {

enum class ActivationKind { identity, relu, leaky_relu, tanh, silu, sigmoid };

}  // namespace pdegen

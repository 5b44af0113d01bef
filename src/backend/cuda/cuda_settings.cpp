// Process-wide choices for the cuDNN convolutions (see cuda_context.hpp); plain values, present in
// every build so that the deck can set them without an #ifdef.
#include <atomic>

#include "backend/cuda/cuda_context.hpp"

namespace pdegen::cuda {

namespace {
std::atomic<ConvMath> g_conv_math{ConvMath::tf32};
std::atomic<size_t> g_workspace_limit{size_t{256} << 20};
std::atomic<bool> g_algo_search{true};
}  // namespace

void set_conv_math(ConvMath math) { g_conv_math = math; }
ConvMath conv_math() { return g_conv_math; }
void set_conv_workspace_limit(size_t bytes) { g_workspace_limit = bytes; }
size_t conv_workspace_limit() { return g_workspace_limit; }
void set_conv_algo_search(bool search) { g_algo_search = search; }
bool conv_algo_search() { return g_algo_search; }

}  // namespace pdegen::cuda

// Flushing denormals (see denormals.hpp).
#include "core/denormals.hpp"

#if defined(__SSE2__)
#include <pmmintrin.h>
#include <xmmintrin.h>
#endif

namespace pdegen {

void flush_denormals_in_this_thread() {
#if defined(__SSE2__)
  _MM_SET_FLUSH_ZERO_MODE(_MM_FLUSH_ZERO_ON);
  _MM_SET_DENORMALS_ZERO_MODE(_MM_DENORMALS_ZERO_ON);
#endif
}

void flush_denormals_in_every_thread() {
  flush_denormals_in_this_thread();
#pragma omp parallel
  flush_denormals_in_this_thread();
}

}  // namespace pdegen

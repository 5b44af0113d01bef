// OpenMP loops for the shared host/device kernels: the CPU side of "written once, run on both".
#pragma once

#include <cstdint>

namespace pdegen::cpu {

// f(i) for i in [0, n), statically split over the OpenMP threads.
template <class F>
void parallel_for(int64_t n, F&& f) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) f(i);
}

}  // namespace pdegen::cpu

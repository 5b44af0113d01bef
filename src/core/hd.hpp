// PDEGEN_HD marks arithmetic that both backends run: a plain inline function for the OpenMP loops
// on the CPU, a __host__ __device__ one when the CUDA compiler sees it (AMReX-style single source).
#pragma once

#if defined(__CUDACC__)
#define PDEGEN_HD __host__ __device__ __forceinline__
#else
#define PDEGEN_HD inline
#endif

// Device kernels of the NcclReducer's 16-bit wire format (fp16 or bf16 bits, fp32 sums): the same
// arithmetic as the MpiReducer's host loops (mpi_reducer.cpp), through the same shared conversions
// (core/dtype.hpp), so both reducers round identically. All run on the given stream. CUDA builds
// only (included by nccl_reducer.cpp under PDEGEN_HAVE_CUDA and by nccl_wire.cu).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace pdegen::nccl_wire {

// wire[i] = 16-bit(data[i]) for i < n, and +0 for n <= i < padded (padding adds nothing to a sum).
void encode(const float* data, int64_t n, uint16_t* wire, int64_t padded, bool bf16, cudaStream_t stream);

// For i < shard: out[i] = 16-bit(fp32 sum over r = 0, 1, ..., ranks - 1 IN THAT ORDER of
// received[r * shard + i]), the sum starting from 0.0f as the host loop does.
void sum_shards(const uint16_t* received, int ranks, int64_t shard, uint16_t* out, bool bf16,
                cudaStream_t stream);

// data[i] = float(wire[i]) for i < n.
void decode(const uint16_t* wire, int64_t n, float* data, bool bf16, cudaStream_t stream);

}  // namespace pdegen::nccl_wire

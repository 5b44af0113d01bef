// The CPU backend's oneDNN state: one engine and one stream for the process, and the mapping from
// pdegen tensors (plain or channel-blocked) to oneDNN memory descriptors.
#pragma once

#include <dnnl.hpp>

#include "core/tensor.hpp"

namespace pdegen::cpu {

dnnl::engine& engine();
dnnl::stream& stream();

// Channel block the CPU backend keeps activations in: 16 with AVX-512 (one register of fp32),
// 8 with AVX2, 1 (plain) otherwise. PDEGEN_CHANNEL_BLOCK=1|8|16 overrides it (tests, benchmarks).
int preferred_channel_block();
// The block an activation with `channels` channels is stored in: the preferred one when it divides
// the channel count, plain otherwise (blocking never pads).
int channel_block_for(int64_t channels);
// The block an activation of `dtype` is stored in: channel_block_for in fp32; in bf16 the whole
// channel count, which is the channels-last (NHWC) layout, because oneDNN's AMX and AVX512-BF16
// convolutions run only on that (on nChw16c it falls back to kernels slower than fp32's).
int activation_block(int64_t channels, DType dtype);
// Whether this CPU runs bf16 convolutions at speed (AVX512-BF16 or AMX, as oneDNN detects them).
bool has_fast_bf16();
// The widest image (last spatial extent, input or output) a bf16 convolution runs on in bf16; wider
// ones run in fp32. oneDNN 2.6.3's AMX backward kernels (jit:avx512_core_amx_bf16, also a transposed
// convolution's forward) corrupt the heap or never return from width 384 on (measured at 384 to
// 2048, whatever the height; 352 and below pass), so this keeps to the widths verified to work.
constexpr int64_t widest_bf16_image = 256;

// Which oneDNN algorithm fp32 convolutions may use. `direct` computes the plain sum of products
// (what the gradient tests use); `automatic` runs Winograd F(4x4, 3x3) where it was measured faster
// (runs_winograd) and oneDNN has it, direct elsewhere. Winograd rounds in the transformed domain:
// about 1e-6 of the outputs' scale from direct, far inside what training notices. Process-wide, set
// from the deck; direct until then.
enum class ConvAlgorithm { direct, automatic };
void set_conv_algorithm(ConvAlgorithm algorithm);
ConvAlgorithm conv_algorithm();
// Whether a convolution of this geometry and type runs as Winograd: with ConvAlgorithm::automatic,
// for 2D fp32 3x3 stride-1 convolutions with at least 32 channels in and out on images at least
// winograd_min_extent nodes on each side (`smallest_extent`), where it measured 1.3-1.9x faster than
// direct in each pass on AVX-512. At 16 channels its forward and backward-data are 1.3-1.8x slower,
// and on small images its 4x4 output tiles are mostly padding (8x8 with 512 channels: 1.4x slower,
// 2x2: 5x slower; docs/performance.md). oneDNN has no bf16 or 3D Winograd here.
constexpr int64_t winograd_min_extent = 16;
bool runs_winograd(int ndim, int kernel, int stride, int64_t in_channels, int64_t out_channels,
                   int64_t smallest_extent, DType dtype);

dnnl::memory::dims dims_of(const Shape& s);
// Layers that compute in fp32 on bf16 activations (the CPU norms; convolutions wider than
// widest_bf16_image): `t` as fp32 in the fp32 activation layout (channel_block_for; a no-op for
// fp32), and the way back into `dtype` and channel block `block` (re-blocked in the narrower type).
Tensor widened_to_fp32(const Tensor& t);
Tensor narrowed_to(const Tensor& t, DType dtype, int block);

// oneDNN's name of an element type (not fp64, which it lacks).
dnnl::memory::data_type dnnl_type(DType t);
// Descriptor of a tensor as it is laid out (plain row-major, nC[D]HW{b}c, or with a block of the
// whole channel count channels-last), of the types oneDNN has (not fp64).
dnnl::memory::desc desc_of(const Tensor& t);
dnnl::memory::desc desc_of(const Shape& s, int channel_block, DType dtype = DType::f32);
// Plain (row-major) descriptor of any rank, e.g. weights OI[D]HW.
dnnl::memory::desc plain_desc(const Shape& s, DType dtype = DType::f32);
dnnl::memory memory_of(const Tensor& t);

// Copies `src` (laid out as `src_desc`) into `dst` (laid out as `dst_desc`); a no-op when equal.
void reorder(const dnnl::memory& src, const dnnl::memory& dst);

// A tensor in the given oneDNN layout: allocated with the descriptor's size (which may include
// padding) and wrapped; used for weights in the layout a primitive chose.
struct DnnlBuffer {
  Tensor storage;  // 1-D byte owner
  dnnl::memory memory;
};
DnnlBuffer make_buffer(const dnnl::memory::desc& desc);

}  // namespace pdegen::cpu

// Which convolution kernels the linked oneDNN offers this CPU, in fp32 and in bf16 (bf16 activations
// and weights, fp32 bias and weight gradients: what `precision: bf16` on the CPU would run), and how
// fast: a 3x3 convolution C -> C forward, backward-weights and backward-data, median of 10 calls.
// Decides whether the system oneDNN reaches the AMX (or AVX512-BF16) kernels' speed.
//   OMP_NUM_THREADS=2 build/cpu/bench_onednn_bf16 [--only=VARIANT] [N C H ...]
//   (default: 4 16 256  4 64 64  16 16 64; the variant names are those printed, e.g. "fp32 winograd")
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dnnl.hpp>
#include <functional>
#include <vector>

#include "bench_common.hpp"

namespace {

using dnnl::memory;
using dt = memory::data_type;
using tag = memory::format_tag;

double median_ms(const std::function<void()>& call) {
  call();  // warm-up: first-touch and JIT code
  call();
  std::vector<double> ms;
  for (int i = 0; i < 10; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    call();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return pdegen::bench::median(ms);
}

// What one row measures: the element type, the activation layout, and fp32 with oneDNN allowed to
// down-convert to bf16 inside the primitive (fpmath_mode, the CPU analogue of TF32).
struct Variant {
  const char* name;
  bool bf16;
  tag activations;
  bool fpmath_bf16;
  dnnl::algorithm algorithm = dnnl::algorithm::convolution_direct;
  bool skip_amx = false;  // pass over the AMX kernels (next_impl) to the next one oneDNN offers
};

template <class Pd>
Pd without_amx(Pd pd, bool skip) {
  while (skip && std::strstr(pd.impl_info_str(), "amx") != nullptr)
    if (!pd.next_impl()) throw dnnl::error(dnnl_unimplemented, "no kernel without AMX");
  return pd;
}

void run_case(const dnnl::engine& eng, dnnl::stream& st, memory::dim n, memory::dim c, memory::dim h,
              const Variant& v) {
  const bool bf16 = v.bf16;
  const dt act = bf16 ? dt::bf16 : dt::f32;
  const memory::dims x{n, c, h, h}, w{c, c, 3, 3}, b{c}, s{1, 1}, p{1, 1};
  const memory::desc xd(x, act, v.activations), wd(w, act, tag::any), bd(b, dt::f32, tag::a),
      dwd(w, dt::f32, tag::any);
  dnnl::primitive_attr attr;
  if (v.fpmath_bf16) attr.set_fpmath_mode(dnnl::fpmath_mode::bf16);
  const dnnl::convolution_forward::primitive_desc f =
      without_amx(dnnl::convolution_forward::primitive_desc(
                      dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, v.algorithm, xd, wd,
                                                      bd, xd, s, p, p),
                      attr, eng),
                  v.skip_amx);
  const dnnl::convolution_backward_weights::primitive_desc bw = without_amx(
      dnnl::convolution_backward_weights::primitive_desc(
          dnnl::convolution_backward_weights::desc(v.algorithm, f.src_desc(), dwd, bd, f.dst_desc(), s, p, p),
          attr, eng, f),
      v.skip_amx);
  const dnnl::convolution_backward_data::primitive_desc bd_pd = without_amx(
      dnnl::convolution_backward_data::primitive_desc(
          dnnl::convolution_backward_data::desc(v.algorithm, f.src_desc(), wd, f.dst_desc(), s, p, p), attr,
          eng, f),
      v.skip_amx);
  memory src(f.src_desc(), eng), dst(f.dst_desc(), eng), wei(f.weights_desc(), eng), bias(bd, eng),
      dwei(bw.diff_weights_desc(), eng), dbias(bd, eng), dsrc(bd_pd.diff_src_desc(), eng),
      wei_bd(bd_pd.weights_desc(), eng);
  for (memory* m : {&src, &dst, &wei, &bias, &wei_bd})
    std::memset(m->get_data_handle(), 0, m->get_desc().get_size());
  const dnnl::convolution_forward fwd(f);
  const dnnl::convolution_backward_weights bwd_w(bw);
  const dnnl::convolution_backward_data bwd_d(bd_pd);
  const double t_f = median_ms([&] {
    fwd.execute(st,
                {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_BIAS, bias}, {DNNL_ARG_DST, dst}});
    st.wait();
  });
  const double t_w = median_ms([&] {
    bwd_w.execute(st, {{DNNL_ARG_SRC, src},
                       {DNNL_ARG_DIFF_DST, dst},
                       {DNNL_ARG_DIFF_WEIGHTS, dwei},
                       {DNNL_ARG_DIFF_BIAS, dbias}});
    st.wait();
  });
  const double t_d = median_ms([&] {
    bwd_d.execute(st, {{DNNL_ARG_DIFF_DST, dst}, {DNNL_ARG_WEIGHTS, wei_bd}, {DNNL_ARG_DIFF_SRC, dsrc}});
    st.wait();
  });
  const double gflop = 2.0 * static_cast<double>(n * c * c * 9 * h * h) / 1e9;
  std::printf(
      "%-13s N%-3lld C%-4lld %4lldx%-4lld fwd %7.2f ms %6.0f GFLOP/s %-30s bwd_w %7.2f ms %6.0f %-30s "
      "bwd_d %7.2f ms %6.0f %s\n",
      v.name, static_cast<long long>(n), static_cast<long long>(c), static_cast<long long>(h),
      static_cast<long long>(h), t_f, gflop / t_f * 1e3, f.impl_info_str(), t_w, gflop / t_w * 1e3,
      bw.impl_info_str(), t_d, gflop / t_d * 1e3, bd_pd.impl_info_str());
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<memory::dim> dims;
  const char* only = nullptr;  // --only=NAME: just the variant of that name
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--only=", 7) == 0)
      only = argv[i] + 7;
    else
      dims.push_back(std::atoll(argv[i]));
  }
  if (dims.empty()) dims = {4, 16, 256, 4, 64, 64, 16, 16, 64};
  if (dims.size() % 3 != 0) {
    std::fprintf(stderr, "usage: bench_onednn_bf16 [--only=VARIANT] [N C H ...] (triples)\n");
    return 2;
  }
  const dnnl_version_t* version = dnnl_version();
  std::printf("oneDNN %d.%d.%d (the implementation names say which instructions run)\n", version->major,
              version->minor, version->patch);
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream st(eng);
  const Variant variants[] = {
      {"fp32", false, tag::any, false},
      {"fp32+fpmath", false, tag::any, true},
      {"fp32 winograd", false, tag::any, false, dnnl::algorithm::convolution_winograd},
      {"bf16", true, tag::any, false},
      {"bf16 nhwc", true, tag::nhwc, false},
      {"bf16 nhwc no AMX", true, tag::nhwc, false, dnnl::algorithm::convolution_direct, true},
      {"bf16 nChw16c", true, tag::nChw16c, false}};
  for (size_t i = 0; i < dims.size(); i += 3)
    for (const Variant& v : variants) {
      if (only != nullptr && std::strcmp(only, v.name) != 0) continue;
      try {
        run_case(eng, st, dims[i], dims[i + 1], dims[i + 2], v);
      } catch (const dnnl::error& e) {
        std::printf("%s N%lld C%lld %lld: not available on this CPU (%s)\n", v.name,
                    static_cast<long long>(dims[i]), static_cast<long long>(dims[i + 1]),
                    static_cast<long long>(dims[i + 2]), e.what());
      }
    }
  return 0;
}

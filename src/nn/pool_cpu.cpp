// Pooling on the CPU: oneDNN pooling primitives (JIT kernels for the channel-blocked and channels-last
// layouts, fp32 or bf16), built once per input shape, layout and type and cached. Source and destination
// descriptors are pinned to the input's layout, so the output keeps it. Max pooling runs as forward_training
// in both modes: its workspace (the argmax of every window, a byte per output element for small kernels) is
// what backward needs.
#include <dnnl.hpp>
#include <unordered_map>

#include "backend/cpu/dnnl_util.hpp"
#include "nn/pool.hpp"

namespace pdegen {

struct Pool::CpuPlan {
  Shape in;
  int block = 1;
  DType dtype = DType::f32;
  dnnl::algorithm algorithm = dnnl::algorithm::undef;
  dnnl::memory::dims strides, kernel, padding;
  dnnl::memory::desc src_md, dst_md;
  dnnl::pooling_forward::primitive_desc forward_pd;
  dnnl::pooling_forward forward;
  bool has_backward = false;  // built on the first backward: inference-only runs never need it
  dnnl::pooling_backward backward;
  cpu::DnnlBuffer workspace;  // max pooling: written by the last forward, read by backward
};

void Pool::CpuPlanDeleter::operator()(CpuPlan* plan) const { delete plan; }

Tensor Pool::forward_cpu(const Tensor& x) {
  const int block = x.channel_block();
  const Shape out_shape = output_shape(x.shape());
  if (!cpu_plan_ || cpu_plan_->in != x.shape() || cpu_plan_->block != block ||
      cpu_plan_->dtype != x.dtype()) {
    std::unique_ptr<CpuPlan, CpuPlanDeleter> plan(new CpuPlan);
    plan->in = x.shape();
    plan->block = block;
    plan->dtype = x.dtype();
    plan->algorithm = algorithm_ == Algorithm::max ? dnnl::algorithm::pooling_max
                                                   : dnnl::algorithm::pooling_avg_include_padding;
    plan->strides = cpu::uniform_dims(config_.ndim, config_.effective_stride());
    plan->kernel = cpu::uniform_dims(config_.ndim, config_.kernel);
    plan->padding = cpu::uniform_dims(config_.ndim, config_.padding);
    plan->src_md = cpu::desc_of(x);
    plan->dst_md = cpu::desc_of(out_shape, block, x.dtype());
    DNNL_CHECK(plan->forward_pd = dnnl::pooling_forward::primitive_desc(
                   dnnl::pooling_forward::desc(dnnl::prop_kind::forward_training, plan->algorithm,
                                               plan->src_md, plan->dst_md, plan->strides, plan->kernel,
                                               plan->padding, plan->padding),
                   cpu::engine()));
    DNNL_CHECK(plan->forward = dnnl::pooling_forward(plan->forward_pd));
    cpu_plan_ = std::move(plan);
  }

  Tensor y = Tensor::empty(out_shape, x.dtype(), x.device(), block);
  std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, cpu::memory_of(x)},
                                             {DNNL_ARG_DST, cpu::memory_of(y)}};
  if (algorithm_ == Algorithm::max) {
    // A fresh buffer each call (the caching allocator recycles it), so the previous step's is never
    // overwritten while someone could still need it.
    cpu_plan_->workspace = cpu::make_buffer(cpu_plan_->forward_pd.workspace_desc());
    args.insert({DNNL_ARG_WORKSPACE, cpu_plan_->workspace.memory});
  }
  cpu::execute(cpu_plan_->forward, args);

  in_shape_ = x.shape();
  in_block_ = block;
  has_forward_ = true;
  return y;
}

Tensor Pool::backward_cpu(const Tensor& dy_in) {
  CpuPlan& plan = *cpu_plan_;
  if (!plan.has_backward) {
    dnnl::pooling_backward::primitive_desc pd;
    DNNL_CHECK(pd = dnnl::pooling_backward::primitive_desc(
                   dnnl::pooling_backward::desc(plan.algorithm, plan.src_md, plan.dst_md, plan.strides,
                                                plan.kernel, plan.padding, plan.padding),
                   cpu::engine(), plan.forward_pd));
    DNNL_CHECK(plan.backward = dnnl::pooling_backward(pd));
    plan.has_backward = true;
  }

  const Tensor dy = to_channel_block(dy_in, in_block_);
  Tensor dx = Tensor::empty(in_shape_, dy.dtype(), dy.device(), in_block_);
  std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_DIFF_DST, cpu::memory_of(dy)},
                                             {DNNL_ARG_DIFF_SRC, cpu::memory_of(dx)}};
  if (algorithm_ == Algorithm::max) args.insert({DNNL_ARG_WORKSPACE, plan.workspace.memory});
  cpu::execute(plan.backward, args);
  return dx;
}

}  // namespace pdegen

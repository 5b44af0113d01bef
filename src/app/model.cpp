// Model construction and checkpoint state (see model.hpp).
#include "app/model.hpp"

#include <cstring>

#include "backend/cpu/dnnl_context.hpp"
#include "core/error.hpp"
#include "nn/network_factory.hpp"

namespace pdegen::app {

std::unique_ptr<Model> build_model(const NetworkPlan& plan, uint64_t seed, Device device) {
  auto model = std::make_unique<Model>();
  model->net = make_network(plan, model->registry);
  model->registry.finalize(seed, device);
  if (device != Device::cpu) {
    model->host = std::make_unique<ParameterRegistry>();
    for (const Parameter& p : model->registry.params()) model->host->add(p.name, p.shape, p.init);
    model->host->finalize(seed);
  }
  return model;
}

void Model::push_values() {
  if (host) Tensor(registry.flat_values()).copy_from(host->flat_values());  // a view: shares storage
}

void Model::pull_grads() {
  if (host) Tensor(host->flat_grads()).copy_from(registry.flat_grads());
}

namespace {
// Copies the stored tensor into `dst` bit for bit, or says what does not match.
void copy_named(const std::vector<std::pair<std::string, Tensor>>& stored, const std::string& name,
                const Tensor& dst, const std::string& path, const char* what) {
  for (const auto& [n, t] : stored) {
    if (n != name) continue;
    if (t.numel() != dst.numel() || t.dtype() != dst.dtype())
      throw UserError(fmt::format("{}: {} '{}' has {} elements of {}, this run expects {} of {}", path, what,
                                  name, t.numel(), dtype_name(t.dtype()), dst.numel(),
                                  dtype_name(dst.dtype())));
    Tensor(dst).copy_from(t.reshape(dst.shape()));  // host or device
    return;
  }
  throw UserError(fmt::format("{}: the checkpoint has no {} '{}'", path, what, name));
}
}  // namespace

void check_precision_runs_here(DType precision, Device device) {
  if (device != Device::cpu || precision != DType::bf16 || cpu::has_fast_bf16()) return;
  throw UserError(
      "precision: bf16 on device: cpu needs a CPU with AVX512-BF16 or AMX (lscpu flags avx512_bf16 or "
      "amx_bf16), and this one has neither: oneDNN's fallback bf16 convolutions are slower than fp32. "
      "Use precision: fp32 here, or bf16 on a CPU that has them (Intel Xeon from Cooper Lake or Sapphire "
      "Rapids, AMD EPYC from Genoa) or on device: cuda");
}

void use_conv_algorithm(ConvAlgorithmKind kind) {
  cpu::set_conv_algorithm(kind == ConvAlgorithmKind::automatic ? cpu::ConvAlgorithm::automatic
                                                               : cpu::ConvAlgorithm::direct);
}

void restore_model(Model& model, const CheckpointData& data, const std::string& path, Optimizer* optimizer) {
  check_parameter_layout(parameter_layout(model.master()), data.parameter_layout, path);
  const Tensor& values = model.master().flat_values();
  PDEGEN_CHECK(data.parameters.numel() == values.numel(), "{}: {} parameters stored, {} expected", path,
               data.parameters.numel(), values.numel());
  std::memcpy(values.raw(), data.parameters.raw(), values.nbytes());
  model.push_values();
  for (auto& [name, t] : model.net->buffers()) copy_named(data.buffers, name, t, path, "buffer");
  if (optimizer) {
    for (auto& [name, t] : optimizer->state())
      copy_named(data.optimizer_state, name, *t, path, "optimizer state");
    optimizer->set_step_count(
        static_cast<int64_t>(data.scalar("optimizer_steps", static_cast<double>(data.step))));
  }
}

void copy_model_state(Model& from, Model& to) {
  check_parameter_layout(parameter_layout(to.master()), parameter_layout(from.master()), "the tile network");
  std::memcpy(to.master().flat_values().raw(), from.master().flat_values().raw(),
              to.master().flat_values().nbytes());
  to.push_values();
  std::vector<std::pair<std::string, Tensor>> stored;
  for (auto& [name, t] : from.net->buffers()) stored.emplace_back(name, t.to(Device::cpu));
  for (auto& [name, t] : to.net->buffers()) copy_named(stored, name, t, "the tile network", "buffer");
}

CheckpointData snapshot(Model& model, Optimizer* optimizer, int64_t step, uint64_t seed, int64_t next_sample,
                        const std::string& deck_yaml) {
  CheckpointData d;
  d.step = step;
  d.seed = seed;
  d.next_sample = next_sample;
  d.deck_yaml = deck_yaml;
  d.parameters = model.master().flat_values();
  d.parameter_layout = parameter_layout(model.master());
  for (auto& [name, t] : model.net->buffers()) d.buffers.emplace_back(name, t.to(Device::cpu));
  if (optimizer) {
    for (auto& [name, t] : optimizer->state()) d.optimizer_state.emplace_back(name, *t);
    d.scalars.emplace_back("optimizer_steps", static_cast<double>(optimizer->step_count()));
  }
  return d;
}

}  // namespace pdegen::app

// The resolved deck as YAML: every key with its effective value, in the documented order, only the
// keys that apply to the chosen pde and types, written so that parse_deck() reads back the same Deck.
#include <fmt/format.h>

#include <cctype>
#include <string>

#include "config/deck.hpp"

namespace pdegen {

namespace {

class YamlWriter {
 public:
  void open(std::string_view section) {
    line(fmt::format("{}:", section));
    indent_ += 2;
  }
  void close() { indent_ -= 2; }
  void key(std::string_view k, const std::string& value) { line(fmt::format("{}: {}", k, value)); }
  std::string text() && { return std::move(text_); }

 private:
  void line(const std::string& s) {
    text_.append(static_cast<size_t>(indent_), ' ');
    text_ += s;
    text_ += '\n';
  }
  std::string text_;
  int indent_ = 0;
};

// Shortest text that reads back as the same double, with a '.' so it reads as a float to people.
std::string number(double v) {
  std::string s = fmt::format("{}", v);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}
std::string integer(int64_t v) { return fmt::format("{}", v); }
std::string boolean(bool v) { return v ? "true" : "false"; }
template <class E>
std::string choice(E v) {
  return std::string(name_of(v));
}

// Plain when it cannot be mistaken for anything but a word or path, double-quoted otherwise.
std::string string(const std::string& s) {
  bool plain = !s.empty() &&
               (std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '/' || s[0] == '.' || s[0] == '_');
  for (char c : s)
    plain = plain &&
            (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '/' || c == '-');
  for (const char* special :
       {"null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE", "yes", "Yes", "YES", "no",
        "No",   "NO",   "on",   "On",   "ON",   "off",  "Off",   "OFF",   "y",     "Y",   "n",   "N"})
    plain = plain && s != special;
  if (plain) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\')
      out += fmt::format("\\{}", c);
    else if (static_cast<unsigned char>(c) < 0x20)
      out += fmt::format("\\x{:02x}", static_cast<unsigned>(c));
    else
      out += c;
  }
  return out + "\"";
}

void write_problem(YamlWriter& w, const ProblemConfig& c) {
  w.open("problem");
  w.key("pde", choice(c.pde));
  w.key("resolution", integer(c.resolution));
  w.key("loss", choice(c.loss));
  if (c.is_poisson()) {
    const auto& p = c.poisson;
    w.key("correlation_length", number(p.correlation_length));
    w.key("kl_modes", integer(p.kl_modes));
    w.key("sigma", number(p.sigma));
    w.key("omega_max", number(p.omega_max));
    w.key("source", number(p.source));
  } else {
    const auto& b = c.burgers;
    w.key("time_resolution", integer(b.time_resolution));
    w.key("t_final", number(b.t_final));
    w.key("viscosity", number(b.viscosity));
    w.key("ic_terms", integer(b.ic_terms));
    w.key("ic_sampling", choice(b.ic_sampling));
    w.key("c_min", number(b.c_min));
    w.key("c_max", number(b.c_max));
    w.key("boundary", choice(b.boundary));
    w.key("boundary_factor", number(b.boundary_factor));
  }
  w.close();
}

void write_network(YamlWriter& w, const NetworkConfig& c) {
  w.open("network");
  w.key("type", choice(c.type));
  w.key("depth", integer(c.depth));
  w.key("base_channels", integer(c.base_channels));
  w.key("channel_multiplier", integer(c.channel_multiplier));
  w.key("convs_per_level", integer(c.convs_per_level));
  w.key("kernel_size", integer(c.kernel_size));
  w.key("norm", choice(c.norm));
  w.key("activation", choice(c.activation));
  w.key("downsample", choice(c.downsample));
  w.key("upsample", choice(c.upsample));
  w.close();
}

// The keys of one optimizer phase, in the documented order.
void write_optimizer_settings(YamlWriter& w, const OptimizerSettings& c) {
  using enum OptimizerKind;
  w.key("type", choice(c.type));
  w.key("lr", number(c.lr));
  w.key("weight_decay", number(c.weight_decay));
  w.key("grad_clip", number(c.grad_clip));
  if (c.type == adam || c.type == adamw || c.type == lamb) {
    w.key("beta1", number(c.adam.beta1));
    w.key("beta2", number(c.adam.beta2));
    w.key("eps", number(c.adam.eps));
  }
  if (c.type == lars) w.key("eps", number(c.lars.eps));
  if (c.type == sgd || c.type == lars) {
    w.key("momentum", number(c.momentum.momentum));
    w.key("nesterov", boolean(c.momentum.nesterov));
  }
  if (c.type == lars) w.key("trust_coefficient", number(c.lars.trust_coefficient));
  if (c.type == lamb) w.key("max_trust_ratio", number(c.lamb.max_trust_ratio));
  if (c.type == lbfgs) {
    const auto& l = c.lbfgs;
    w.key("history", integer(l.history));
    w.key("max_iterations", integer(l.max_iterations));
    w.key("max_evaluations", integer(l.max_evaluations));
    w.key("line_search", choice(l.line_search));
    w.key("tolerance_grad", number(l.tolerance_grad));
    w.key("tolerance_change", number(l.tolerance_change));
    w.key("curvature_eps", number(l.curvature_eps));
    w.key("damping", boolean(l.damping));
    w.key("shard_history", boolean(l.shard_history));
    w.key("batch", choice(l.batch));
  }
  w.open("schedule");
  w.key("type", choice(c.schedule.type));
  w.key("warmup_steps", integer(c.schedule.warmup_steps));
  if (c.schedule.type == ScheduleKind::step) {
    w.key("step_size", integer(c.schedule.step_size));
    w.key("gamma", number(c.schedule.gamma));
  }
  if (c.schedule.type == ScheduleKind::cosine) w.key("min_lr", number(c.schedule.min_lr));
  w.close();
}

// The phases nest: each later phase is the `then` of the one before.
void write_optimizer(YamlWriter& w, const OptimizerConfig& c) {
  w.open("optimizer");
  write_optimizer_settings(w, c);
  for (const OptimizerPhase& phase : c.phases) {
    w.open("then");
    w.key("after_steps", integer(phase.after_steps));
    write_optimizer_settings(w, phase.settings);
  }
  for (size_t i = 0; i < c.phases.size(); ++i) w.close();
  w.close();
}

}  // namespace

std::string to_yaml(const Deck& d) {
  YamlWriter w;
  write_problem(w, d.problem);
  write_network(w, d.network);
  write_optimizer(w, d.optimizer);

  w.open("training");
  w.key("steps", integer(d.training.steps));
  w.key("batch_size", integer(d.training.batch_size));
  w.key("seed", fmt::format("{}", d.training.seed));
  w.key("micro_batches", integer(d.training.micro_batches));
  w.key("log_every", integer(d.training.log_every));
  w.key("checkpoint_every", integer(d.training.checkpoint_every));
  w.key("restart", string(d.training.restart));
  w.close();

  w.open("parallel");
  w.key("bucket_mb", number(d.parallel.bucket_mb));
  w.key("first_bucket_mb", number(d.parallel.first_bucket_mb));
  w.key("overlap", boolean(d.parallel.overlap));
  w.key("hierarchical", choice(d.parallel.hierarchical));
  w.key("compression", choice(d.parallel.compression));
  w.key("sync_batchnorm", choice(d.parallel.sync_batchnorm));
  w.key("consistency_every", integer(d.parallel.consistency_every));
  w.close();

  w.open("evaluation");
  w.key("every", integer(d.evaluation.every));
  w.key("samples", integer(d.evaluation.samples));
  w.key("solver_tolerance", number(d.evaluation.solver_tolerance));
  w.close();

  w.open("output");
  w.key("dir", string(d.output.dir));
  w.key("fields", boolean(d.output.fields));
  w.key("field_samples", integer(d.output.field_samples));
  w.key("checkpoint_keep", integer(d.output.checkpoint_keep));
  w.close();

  w.open("cuda");
  w.key("conv_math", choice(d.cuda.conv_math));
  w.key("workspace_mb", number(d.cuda.workspace_mb));
  w.key("algo_search", boolean(d.cuda.algo_search));
  w.close();
  w.open("timeline");
  w.key("enabled", boolean(d.timeline.enabled));
  w.key("first_step", integer(d.timeline.first_step));
  w.key("steps", integer(d.timeline.steps));
  w.close();

  w.key("device", choice(d.device));
  w.key("precision", choice(d.precision));
  w.open("loss_scaling");
  w.key("enabled", boolean(d.loss_scaling.enabled));
  w.key("initial_scale", number(d.loss_scaling.initial_scale));
  w.key("growth_factor", number(d.loss_scaling.growth_factor));
  w.key("backoff_factor", number(d.loss_scaling.backoff_factor));
  w.key("growth_interval", integer(d.loss_scaling.growth_interval));
  w.key("min_scale", number(d.loss_scaling.min_scale));
  w.key("max_scale", number(d.loss_scaling.max_scale));
  w.close();
  return std::move(w).text();
}

}  // namespace pdegen

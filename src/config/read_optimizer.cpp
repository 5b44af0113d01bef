// optimizer, optimizer.schedule and the phases in optimizer.then: the common keys, then the keys of
// each optimizer type and schedule type behind gates, so a key of another type is named as such
// instead of "unknown". A `then` section is a whole optimizer section plus `after_steps`, and may
// itself hold a `then`: the reader flattens the chain into OptimizerConfig::phases.
#include <algorithm>
#include <initializer_list>
#include <optional>

#include "config/section_readers.hpp"

namespace pdegen::config {

namespace {

// `lr` is nothing when optimizer.lr was invalid (then min_lr is not compared with it).
ScheduleConfig read_schedule(Section& s, std::optional<double> lr) {
  ScheduleConfig c;
  const auto type = s.try_choice<ScheduleKind>("type", c.type);
  if (type) c.type = *type;
  const std::string actual = fmt::format("optimizer.schedule.type is '{}'", name_of(c.type));
  c.warmup_steps = s.integer("warmup_steps", c.warmup_steps, at_least(0));
  {
    Section::Gate gate(s, !type || c.type == ScheduleKind::step, "schedule type step", actual);
    c.step_size = s.integer("step_size", c.step_size, at_least(1));
    c.gamma = s.number("gamma", c.gamma, Range{0, 1, true, false});
  }
  {
    Section::Gate gate(s, !type || c.type == ScheduleKind::cosine, "schedule type cosine", actual);
    c.min_lr = s.number("min_lr", c.min_lr, at_least(0));
    if (lr && s.ok("min_lr") && c.min_lr > *lr)
      s.fail("min_lr", fmt::format("'optimizer.schedule.min_lr' ({}) must not exceed optimizer.lr ({})",
                                   c.min_lr, *lr));
  }
  return c;
}

// The keys of one optimizer (the section itself or a `then` phase), without `then`.
OptimizerSettings read_settings(Section& s) {
  OptimizerSettings c;
  const auto type = s.try_choice<OptimizerKind>("type", c.type);
  if (type) c.type = *type;
  // With an unknown type every key is read (and type-checked), none is ruled out.
  auto type_in = [&](std::initializer_list<OptimizerKind> kinds) {
    return !type || std::find(kinds.begin(), kinds.end(), c.type) != kinds.end();
  };
  const std::string actual = fmt::format("{} is '{}'", s.key_path("type"), name_of(c.type));

  c.lr = s.number("lr", c.lr, above(0));
  c.weight_decay = s.number("weight_decay", c.weight_decay, at_least(0));
  c.grad_clip = s.number("grad_clip", c.grad_clip, at_least(0));
  if (type == OptimizerKind::lbfgs && s.ok("grad_clip") && c.grad_clip > 0)
    s.fail("grad_clip", fmt::format("'{}' does not apply to lbfgs: clipping would change the gradient its "
                                    "line search measures (leave it 0)",
                                    s.key_path("grad_clip")));
  {
    using enum OptimizerKind;
    Section::Gate gate(s, type_in({adam, adamw, lamb}), "optimizer types adam, adamw and lamb", actual);
    c.adam.beta1 = s.number("beta1", c.adam.beta1, half_open(0, 1));
    c.adam.beta2 = s.number("beta2", c.adam.beta2, half_open(0, 1));
  }
  {
    // One key, two meanings: Adam's denominator term, or the one of the LARS trust ratio.
    using enum OptimizerKind;
    Section::Gate gate(s, type_in({adam, adamw, lamb, lars}), "optimizer types adam, adamw, lamb and lars",
                       actual);
    if (type == lars)
      c.lars.eps = s.number("eps", c.lars.eps, at_least(0));
    else
      c.adam.eps = s.number("eps", c.adam.eps, above(0));
  }
  {
    using enum OptimizerKind;
    Section::Gate gate(s, type_in({sgd, lars}), "optimizer types sgd and lars", actual);
    c.momentum.momentum = s.number("momentum", c.momentum.momentum, half_open(0, 1));
    c.momentum.nesterov = s.boolean("nesterov", c.momentum.nesterov);
    if (c.momentum.nesterov && s.ok("momentum") && c.momentum.momentum == 0)
      s.fail("nesterov", fmt::format("'{}' needs {} > 0", s.key_path("nesterov"), s.key_path("momentum")));
  }
  {
    Section::Gate gate(s, type_in({OptimizerKind::lars}), "optimizer type lars", actual);
    c.lars.trust_coefficient = s.number("trust_coefficient", c.lars.trust_coefficient, above(0));
  }
  {
    Section::Gate gate(s, type_in({OptimizerKind::lamb}), "optimizer type lamb", actual);
    c.lamb.max_trust_ratio = s.number("max_trust_ratio", c.lamb.max_trust_ratio, at_least(0));
  }
  {
    Section::Gate gate(s, type_in({OptimizerKind::lbfgs}), "optimizer type lbfgs", actual);
    auto& l = c.lbfgs;
    l.history = s.integer_as<int>("history", l.history, at_least(1));
    l.max_iterations = s.integer_as<int>("max_iterations", l.max_iterations, at_least(1));
    l.max_evaluations = s.integer_as<int>("max_evaluations", l.max_evaluations, at_least(1));
    l.line_search = s.choice<LineSearch>("line_search", l.line_search);
    l.tolerance_grad = s.number("tolerance_grad", l.tolerance_grad, at_least(0));
    l.tolerance_change = s.number("tolerance_change", l.tolerance_change, at_least(0));
    l.curvature_eps = s.number("curvature_eps", l.curvature_eps, at_least(0));
    l.damping = s.boolean("damping", l.damping);
    l.shard_history = s.boolean("shard_history", l.shard_history);
    l.batch = s.choice<LbfgsBatch>("batch", l.batch);
  }
  Section schedule = s.section("schedule");
  c.schedule = read_schedule(schedule, s.ok("lr") ? std::optional<double>(c.lr) : std::nullopt);
  schedule.finish();
  return c;
}

// The `then` chain below `s`, appended to `phases`; `previous_start` is where the phase of `s` starts.
void read_then(Section& s, int64_t previous_start, std::vector<OptimizerPhase>& phases) {
  const bool present = s.has("then");
  Section then = s.section("then");
  if (!present) return;
  OptimizerPhase phase;
  const auto after = then.required_integer(
      "after_steps", "the number of completed training steps after which this optimizer takes over",
      at_least(1));
  if (after && *after <= previous_start)
    then.fail("after_steps", fmt::format("'{}' is {}; it must be greater than the step at which the phase "
                                         "before starts ({})",
                                         then.key_path("after_steps"), *after, previous_start));
  phase.after_steps = after.value_or(previous_start + 1);
  phase.settings = read_settings(then);
  phases.push_back(phase);
  read_then(then, phase.after_steps, phases);
  then.finish();
}

}  // namespace

OptimizerConfig read_optimizer(Section& s) {
  OptimizerConfig c;
  static_cast<OptimizerSettings&>(c) = read_settings(s);
  read_then(s, 0, c.phases);
  return c;
}

}  // namespace pdegen::config

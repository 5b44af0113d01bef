// optimizer and optimizer.schedule: the common keys, then the keys of each optimizer type and
// schedule type behind gates, so a key of another type is named as such instead of "unknown".
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

}  // namespace

OptimizerConfig read_optimizer(Section& s) {
  OptimizerConfig c;
  const auto type = s.try_choice<OptimizerKind>("type", c.type);
  if (type) c.type = *type;
  // With an unknown type every key is read (and type-checked), none is ruled out.
  auto type_in = [&](std::initializer_list<OptimizerKind> kinds) {
    return !type || std::find(kinds.begin(), kinds.end(), c.type) != kinds.end();
  };
  const std::string actual = fmt::format("optimizer.type is '{}'", name_of(c.type));

  c.lr = s.number("lr", c.lr, above(0));
  c.weight_decay = s.number("weight_decay", c.weight_decay, at_least(0));
  c.grad_clip = s.number("grad_clip", c.grad_clip, at_least(0));
  {
    using enum OptimizerKind;
    Section::Gate gate(s, type_in({adam, adamw, lamb}), "optimizer types adam, adamw and lamb", actual);
    c.adam.beta1 = s.number("beta1", c.adam.beta1, half_open(0, 1));
    c.adam.beta2 = s.number("beta2", c.adam.beta2, half_open(0, 1));
    c.adam.eps = s.number("eps", c.adam.eps, above(0));
  }
  {
    using enum OptimizerKind;
    Section::Gate gate(s, type_in({sgd, lars}), "optimizer types sgd and lars", actual);
    c.momentum.momentum = s.number("momentum", c.momentum.momentum, half_open(0, 1));
    c.momentum.nesterov = s.boolean("nesterov", c.momentum.nesterov);
    if (c.momentum.nesterov && s.ok("momentum") && c.momentum.momentum == 0)
      s.fail("nesterov", "'optimizer.nesterov' needs optimizer.momentum > 0");
  }
  {
    Section::Gate gate(s, type_in({OptimizerKind::lars}), "optimizer type lars", actual);
    c.lars.trust_coefficient = s.number("trust_coefficient", c.lars.trust_coefficient, above(0));
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
    l.shard_history = s.boolean("shard_history", l.shard_history);
    l.batch = s.choice<LbfgsBatch>("batch", l.batch);
  }
  Section schedule = s.section("schedule");
  c.schedule = read_schedule(schedule, s.ok("lr") ? std::optional<double>(c.lr) : std::nullopt);
  schedule.finish();
  return c;
}

}  // namespace pdegen::config

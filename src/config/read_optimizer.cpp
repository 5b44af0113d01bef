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
ScheduleConfig read_schedule(Section& s, ScheduleConfig c, std::optional<double> lr) {
  const auto type = s.try_choice<ScheduleKind>("type", c.type, "the schedule after warm-up");
  if (type) c.type = *type;
  const std::string actual = fmt::format("optimizer.schedule.type is '{}'", name_of(c.type));
  c.warmup_steps = s.integer("warmup_steps", c.warmup_steps, at_least(0), "linear warm-up from 0 to `lr`");
  {
    Section::Gate gate(s, !type || c.type == ScheduleKind::step, "schedule type step", actual);
    c.step_size = s.integer("step_size", c.step_size, at_least(1), "steps between decays");
    c.gamma = s.number("gamma", c.gamma, Range{0, 1, true, false}, "decay factor");
  }
  {
    Section::Gate gate(s, !type || c.type == ScheduleKind::cosine, "schedule type cosine", actual);
    c.min_lr = s.number("min_lr", c.min_lr, at_least(0),
                        Doc("learning rate at the last step").allowed("<= `optimizer.lr`"));
    if (lr && s.ok("min_lr") && c.min_lr > *lr)
      s.fail("min_lr", fmt::format("'optimizer.schedule.min_lr' ({}) must not exceed optimizer.lr ({})",
                                   c.min_lr, *lr));
  }
  return c;
}

void read_lbfgs(Section& s, LbfgsSettings& l) {
  l.history = s.integer_as<int>("history", l.history, at_least(1), "curvature pairs kept");
  l.max_iterations =
      s.integer_as<int>("max_iterations", l.max_iterations, at_least(1), "quasi-Newton iterations per step");
  l.max_evaluations =
      s.integer_as<int>("max_evaluations", l.max_evaluations, at_least(1),
                        "loss evaluations per step (at least 2 are made when a line search runs)");
  l.line_search = s.choice<LineSearch>("line_search", l.line_search,
                                       "strong Wolfe (bracketing + cubic zoom) or Armijo backtracking");
  l.tolerance_grad = s.number("tolerance_grad", l.tolerance_grad, at_least(0),
                              "stop the step when the gradient's max-norm is at most this");
  l.tolerance_change = s.number("tolerance_change", l.tolerance_change, at_least(0),
                                "stop the step when the loss or the step (max-norm) changes less");
  l.curvature_eps = s.number("curvature_eps", l.curvature_eps, at_least(0),
                             "skip a curvature pair (s, y) with s.y <= curvature_eps * y.y");
  l.damping = s.boolean("damping", l.damping,
                        "Powell damping of y (towards s / H_diag) before the curvature test: keeps pairs on "
                        "non-convex losses");
  l.shard_history = s.boolean("shard_history", l.shard_history,
                              "each rank stores 1/P of every s and y (memory per rank falls with P)");
  l.batch = s.choice<LbfgsBatch>("batch", l.batch,
                                 "the same batch at every step (full-batch), or a fresh batch per step");
}

// The keys of one optimizer (the section itself or a `then` phase), without `then`.
OptimizerSettings read_settings(Section& s, OptimizerSettings c) {
  const auto type = s.try_choice<OptimizerKind>("type", c.type, "the optimizer");
  if (type) c.type = *type;
  // With an unknown type every key is read (and type-checked), none is ruled out.
  auto type_in = [&](std::initializer_list<OptimizerKind> kinds) {
    return !type || std::find(kinds.begin(), kinds.end(), c.type) != kinds.end();
  };
  const std::string actual = fmt::format("{} is '{}'", s.key_path("type"), name_of(c.type));

  c.lr = s.number(
      "lr", c.lr, above(0),
      "learning rate (the peak, with a schedule); for lbfgs the first trial step of each line search");
  c.weight_decay = s.number("weight_decay", c.weight_decay, at_least(0),
                            "L2 penalty (adam, sgd, lars: added to the gradient) or decoupled decay (adamw, "
                            "lamb: added to the update)");
  c.grad_clip = s.number("grad_clip", c.grad_clip, at_least(0),
                         "clip the global gradient norm to this value; 0 = off. Not with lbfgs");
  if (type == OptimizerKind::lbfgs && s.ok("grad_clip") && c.grad_clip > 0)
    s.fail("grad_clip", fmt::format("'{}' does not apply to lbfgs: clipping would change the gradient its "
                                    "line search measures (leave it 0)",
                                    s.key_path("grad_clip")));
  {
    using enum OptimizerKind;
    Section::Gate gate(s, type_in({adam, adamw, lamb}), "optimizer types adam, adamw and lamb", actual);
    c.adam.beta1 = s.number("beta1", c.adam.beta1, half_open(0, 1), "first-moment decay");
    c.adam.beta2 = s.number("beta2", c.adam.beta2, half_open(0, 1), "second-moment decay");
  }
  {
    // One key, two meanings: Adam's denominator term, or the one of the LARS trust ratio.
    using enum OptimizerKind;
    Section::Gate gate(s, type_in({adam, adamw, lamb, lars}), "optimizer types adam, adamw, lamb and lars",
                       actual);
    const Doc eps = "denominator guard; for lars the term in the trust ratio's denominator";
    if (type == lars)
      c.lars.eps = s.number("eps", c.lars.eps, at_least(0), eps.allowed("adam, adamw, lamb: > 0"));
    else
      c.adam.eps = s.number("eps", c.adam.eps, above(0), eps.allowed("lars: >= 0"));
  }
  {
    using enum OptimizerKind;
    Section::Gate gate(s, type_in({sgd, lars}), "optimizer types sgd and lars", actual);
    c.momentum.momentum = s.number("momentum", c.momentum.momentum, half_open(0, 1), "momentum");
    c.momentum.nesterov =
        s.boolean("nesterov", c.momentum.nesterov, Doc("Nesterov momentum").allowed("needs momentum > 0"));
    if (c.momentum.nesterov && s.ok("momentum") && c.momentum.momentum == 0)
      s.fail("nesterov", fmt::format("'{}' needs {} > 0", s.key_path("nesterov"), s.key_path("momentum")));
  }
  {
    Section::Gate gate(s, type_in({OptimizerKind::lars}), "optimizer type lars", actual);
    c.lars.trust_coefficient = s.number("trust_coefficient", c.lars.trust_coefficient, above(0),
                                        "layer-wise trust ratio coefficient");
  }
  {
    Section::Gate gate(s, type_in({OptimizerKind::lamb}), "optimizer type lamb", actual);
    c.lamb.max_trust_ratio = s.number("max_trust_ratio", c.lamb.max_trust_ratio, at_least(0),
                                      "upper clamp of the trust ratio; 0 = no clamp");
  }
  {
    Section::Gate gate(s, type_in({OptimizerKind::lbfgs}), "optimizer type lbfgs", actual);
    read_lbfgs(s, c.lbfgs);
  }
  Section schedule = s.section("schedule", "the learning rate over the run (below)");
  c.schedule = read_schedule(schedule, c.schedule, s.ok("lr") ? std::optional<double>(c.lr) : std::nullopt);
  schedule.finish();
  return c;
}

// The `then` chain below `s`, appended to `phases`; `previous_start` is where the phase of `s` starts.
// `given`: the phases of a described Deck (empty when reading a deck), whose values are the fallbacks.
void read_then(Section& s, int64_t previous_start, const std::vector<OptimizerPhase>& given,
               std::vector<OptimizerPhase>& phases) {
  const size_t index = phases.size();
  const bool present = s.has("then") || index < given.size();
  Section then =
      s.section("then", "the next optimizer phase: a whole optimizer section plus `after_steps`", present);
  if (!present) return;
  OptimizerPhase phase = index < given.size() ? given[index] : OptimizerPhase{};
  const auto after = then.required_integer(
      "after_steps", phase.after_steps,
      "the number of completed training steps after which this optimizer takes over", at_least(1),
      Doc("completed training steps after which this optimizer takes over")
          .allowed("> the `after_steps` of the phase before"));
  if (after && *after <= previous_start)
    then.fail("after_steps", fmt::format("'{}' is {}; it must be greater than the step at which the phase "
                                         "before starts ({})",
                                         then.key_path("after_steps"), *after, previous_start));
  phase.after_steps = after.value_or(previous_start + 1);
  phase.settings = read_settings(then, phase.settings);
  phases.push_back(phase);
  read_then(then, phase.after_steps, given, phases);
  then.finish();
}

}  // namespace

OptimizerConfig read_optimizer(Section& s, OptimizerConfig c) {
  static_cast<OptimizerSettings&>(c) = read_settings(s, c);
  const std::vector<OptimizerPhase> given = std::move(c.phases);
  c.phases.clear();
  read_then(s, 0, given, c.phases);
  return c;
}

}  // namespace pdegen::config

// The multigrid section and its level sections (multigrid.level0 is the coarsest). A level's keys
// default to the deck's own: the resolution halves from problem.resolution level by level, steps,
// batch size and learning rate are those of the training and optimizer sections.
#include "config/section_readers.hpp"

namespace pdegen::config {

namespace {

MultigridLevel read_level(Section& s, MultigridLevel c, int default_resolution, const Deck& d) {
  const bool resolve = !s.describing();
  c.resolution = s.integer_as<int>("resolution", resolve ? 0 : c.resolution, at_least(0),
                                   Doc("nodes per axis at this level (burgers1d: in x; the time nodes scale "
                                       "with it)")
                                       .default_is("`problem.resolution` / 2^(levels - 1 - k)"));
  if (resolve && c.resolution == 0) s.resolved("resolution", c.resolution = default_resolution);
  c.steps = s.integer("steps", resolve ? 0 : c.steps, at_least(0),
                      Doc("optimizer steps per visit of this level").default_is("`training.steps`"));
  if (resolve && c.steps == 0) s.resolved("steps", c.steps = d.training.steps);
  c.batch_size = s.integer("batch_size", resolve ? 0 : c.batch_size, at_least(0),
                           Doc("global batch at this level").default_is("`training.batch_size`"));
  if (resolve && c.batch_size == 0) s.resolved("batch_size", c.batch_size = d.training.batch_size);
  if (c.batch_size < d.training.micro_batches)
    s.fail("batch_size", fmt::format("'{}' ({}) must not be below training.micro_batches ({})",
                                     s.key_path("batch_size"), c.batch_size, d.training.micro_batches));
  c.lr = s.number("lr", c.lr, at_least(0), "learning rate at this level; 0 = `optimizer.lr`");
  c.stop_error = s.number("stop_error", c.stop_error, at_least(0),
                          "a visit ends early once an evaluation's mean rel_l2 is at most this (evaluated "
                          "every `evaluation.every` steps); 0 = always run `steps`");
  return c;
}

// Resolutions coarsest first, strictly increasing, the finest that of problem.resolution.
void check_resolutions(Section& s, const MultigridConfig& c, const Deck& d) {
  for (int k = 0; k < c.levels; ++k) {
    const int r = c.level[static_cast<size_t>(k)].resolution;
    const std::string key = fmt::format("level{}", k);
    if (k > 0 && r <= c.level[static_cast<size_t>(k) - 1].resolution)
      s.fail(key, fmt::format("'multigrid.{}.resolution' ({}) must exceed that of level{} ({}): levels go "
                              "from the coarsest to the finest",
                              key, r, k - 1, c.level[static_cast<size_t>(k) - 1].resolution));
    if (k == c.levels - 1 && r != d.problem.resolution)
      s.fail(key, fmt::format("'multigrid.{}.resolution' ({}) must equal problem.resolution ({}): the finest "
                              "level is the problem's grid",
                              key, r, d.problem.resolution));
    if (r < 2)
      s.fail(key, fmt::format("'multigrid.{}.resolution' is {}; a level needs at least 2 nodes per axis "
                              "(fewer levels, or a finer problem.resolution)",
                              key, r));
  }
}

}  // namespace

MultigridConfig read_multigrid(Section& s, MultigridConfig c, const Deck& d) {
  c.levels = s.integer_as<int>("levels", c.levels, Range{1, 12, false, false},
                               "resolutions trained on, each a section `level<k>` (k = 0 the coarsest, "
                               "`levels` - 1 the finest, problem.resolution); 1 = no multigrid");
  c.cycle = s.choice<CycleKind>(
      "cycle", c.cycle,
      "the order of the visits: `half_v` coarse to fine once; `v` fine to coarse to fine; `w` and `f` the "
      "W- and F-cycles of multigrid (docs/theory.md, \"Multigrid training\"); every cycle ends at the "
      "finest");
  c.optimizer_state = s.choice<OptimizerCarry>(
      "optimizer_state", c.optimizer_state,
      "at the start of each visit: `reset` = a fresh optimizer (moments, step count); `carry` = keep the "
      "state of the visit before (the parameters are the same at every resolution)");
  c.deepen = s.boolean(
      "deepen", c.deepen,
      Doc("the network deepens with the resolution: level k's U-Net is the finest one's inner "
          "`network.depth` - (`levels` - 1 - k) levels (base_channels x channel_multiplier^(levels - 1 - "
          "k)); "
          "on the next level the inner levels keep their weights and the new outermost level starts fresh "
          "(with a fresh optimizer)")
          .allowed("`cycle: half_v`; `network.depth` >= `levels`"));
  if (c.deepen && s.ok("cycle") && c.cycle != CycleKind::half_v)
    s.fail("deepen", fmt::format("'multigrid.deepen' needs cycle half_v, not {}: a visit to a coarser level "
                                 "would drop the outer levels' weights",
                                 name_of(c.cycle)));
  if (c.deepen && d.network.type != NetworkKind::unet)
    s.fail("deepen", fmt::format("'multigrid.deepen' grows a U-Net level by level; network.type is {}",
                                 name_of(d.network.type)));
  else if (c.deepen && s.ok("levels") && d.network.depth < c.levels)
    s.fail("deepen", fmt::format("'multigrid.deepen' with {} levels needs network.depth >= {} (the coarsest "
                                 "level's U-Net has network.depth - {} levels), not {}",
                                 c.levels, c.levels, c.levels - 1, d.network.depth));
  const std::vector<MultigridLevel> given = std::move(c.level);
  c.level.assign(static_cast<size_t>(c.levels > 1 ? c.levels : 0), MultigridLevel{});
  for (int k = 0; k < static_cast<int>(c.level.size()); ++k) {
    const auto i = static_cast<size_t>(k);
    Section level = s.section(fmt::format("level{}", k), "one resolution of the hierarchy");
    c.level[i] = read_level(level, i < given.size() ? given[i] : MultigridLevel{},
                            d.problem.resolution >> (c.levels - 1 - k), d);
    level.finish();
  }
  if (c.levels > 1 && s.ok("levels") && !s.describing()) check_resolutions(s, c, d);
  return c;
}

}  // namespace pdegen::config

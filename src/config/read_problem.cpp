// problem: the PDE, its grid and the keys of each PDE (the gates keep poisson keys out of burgers
// decks and the other way round).
#include <climits>

#include "config/section_readers.hpp"

namespace pdegen::config {

ProblemConfig read_problem(Section& s) {
  ProblemConfig c;
  const auto pde = s.required_choice<PdeKind>("pde", "the PDE to solve: " + choice_list<PdeKind>());
  if (pde) c.pde = *pde;
  if (auto n = s.required_integer("resolution", "nodes per axis, e.g. 64", at_least(3), INT_MAX))
    c.resolution = static_cast<int>(*n);
  // With an unknown pde every key is read (and type-checked), none is ruled out.
  const bool poisson = !pde || c.is_poisson();
  const bool burgers = !pde || c.pde == PdeKind::burgers1d;
  const std::string actual = fmt::format("problem.pde is '{}'", name_of(c.pde));

  c.loss = s.choice<LossKind>("loss", pde && !c.is_poisson() ? LossKind::residual : c.loss);
  if (pde && c.pde == PdeKind::burgers1d && c.loss != LossKind::residual)
    s.fail("loss",
           fmt::format("'problem.loss' is '{}', but burgers1d supports only: residual", name_of(c.loss)));

  {
    Section::Gate gate(s, poisson, "problem.pde poisson2d and poisson3d", actual);
    auto& p = c.poisson;
    p.correlation_length = s.number("correlation_length", p.correlation_length, above(0));
    p.kl_modes = s.integer_as<int>("kl_modes", p.kl_modes, at_least(1));
    p.sigma = s.number("sigma", p.sigma, at_least(0));
    p.omega_max = s.number("omega_max", p.omega_max, at_least(0));
    p.source = s.number("source", p.source);
  }
  {
    Section::Gate gate(s, burgers, "problem.pde burgers1d", actual);
    auto& b = c.burgers;
    b.time_resolution = s.integer_as<int>("time_resolution", b.time_resolution, at_least(0));
    if (b.time_resolution > 0 && b.time_resolution < 3)
      s.fail("time_resolution",
             fmt::format("'problem.time_resolution' must be 0 (same as problem.resolution) "
                         "or >= 3, got {}",
                         b.time_resolution));
    b.t_final = s.number("t_final", b.t_final, above(0));
    b.viscosity = s.number("viscosity", b.viscosity, at_least(0));
    b.ic_terms = s.integer_as<int>("ic_terms", b.ic_terms, at_least(1));
    b.ic_sampling = s.choice<IcSampling>("ic_sampling", b.ic_sampling);
    b.c_min = s.number("c_min", b.c_min, above(0));
    b.c_max = s.number("c_max", b.c_max, above(0));
    if (s.ok("c_min") && s.ok("c_max") && b.c_max < b.c_min)
      s.fail("c_max", fmt::format("'problem.c_max' ({}) must be >= problem.c_min ({})", b.c_max, b.c_min));
    b.boundary = s.choice<BoundaryTreatment>("boundary", b.boundary);
    b.boundary_factor = s.number("boundary_factor", b.boundary_factor, above(0));
    // The resolved deck states the effective number of time nodes.
    if (pde && c.pde == PdeKind::burgers1d && b.time_resolution == 0) b.time_resolution = c.resolution;
  }
  return c;
}

}  // namespace pdegen::config

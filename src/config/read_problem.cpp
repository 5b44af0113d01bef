// problem: the PDE, its grid and the keys of each PDE (the gates keep poisson keys out of burgers
// decks and the other way round).
#include <algorithm>
#include <climits>
#include <cstdint>

#include "config/section_readers.hpp"

namespace pdegen::config {

namespace {

void read_poisson(Section& s, PoissonSettings& p) {
  p.correlation_length = s.number("correlation_length", p.correlation_length, above(0),
                                  "correlation length l of the exponential covariance of log nu");
  p.kl_modes =
      s.integer_as<int>("kl_modes", p.kl_modes, at_least(1),
                        Doc("Karhunen-Loeve modes kept (products of 1D modes, by decreasing eigenvalue)")
                            .allowed("<= the grid's nodes, `resolution`^2 (poisson3d: ^3)"));
  p.sigma = s.number("sigma", p.sigma, at_least(0), "scale of log nu");
  p.omega_max =
      s.number("omega_max", p.omega_max, at_least(0), "mode weights omega_k ~ U[-omega_max, omega_max]");
  p.source = s.number("source", p.source, Range{}, "constant source term f");
}

void read_burgers(Section& s, BurgersSettings& b) {
  b.time_resolution =
      s.integer_as<int>("time_resolution", b.time_resolution, at_least(0),
                        Doc("nodes in t; 0 means the same as `resolution` (the resolved deck shows the "
                            "number). Must be divisible by 2^(network.depth - 1)")
                            .allowed("not 1 or 2"));
  if (b.time_resolution > 0 && b.time_resolution < 3)
    s.fail("time_resolution", fmt::format("'problem.time_resolution' must be 0 (same as problem.resolution) "
                                          "or >= 3, got {}",
                                          b.time_resolution));
  b.t_final = s.number("t_final", b.t_final, above(0), "end time T");
  b.viscosity = s.number("viscosity", b.viscosity, at_least(0), "nu; 0 is inviscid Burgers");
  b.ic_terms = s.integer_as<int>("ic_terms", b.ic_terms, at_least(1), "terms in the initial condition b(x)");
  b.ic_sampling = s.choice<IcSampling>("ic_sampling", b.ic_sampling,
                                       "frequencies c drawn uniformly at random, or evenly spaced");
  b.c_min = s.number("c_min", b.c_min, above(0), "smallest frequency");
  b.c_max = s.number("c_max", b.c_max, above(0), Doc("largest frequency").allowed(">= `c_min`"));
  if (s.ok("c_min") && s.ok("c_max") && b.c_max < b.c_min)
    s.fail("c_max", fmt::format("'problem.c_max' ({}) must be >= problem.c_min ({})", b.c_max, b.c_min));
  b.boundary = s.choice<BoundaryTreatment>(
      "boundary", b.boundary, "initial and inflow conditions imposed exactly (mask), or by a penalty");
  b.boundary_factor = s.number("boundary_factor", b.boundary_factor, above(0), "weight of the penalty");
}

// On a grid of N nodes at most N modes are independent: more only alias onto the others, while
// each one costs the sampler a table of `resolution` values per axis and a term per node and sample
// (100000 modes on 64^2 nodes: over three minutes for two steps).
void check_kl_modes(Section& s, const ProblemConfig& c) {
  int64_t nodes = 1;
  for (int d = 0; d < c.spatial_dims(); ++d) nodes = std::min<int64_t>(nodes * c.resolution, INT_MAX);
  if (c.poisson.kl_modes > nodes)
    s.fail("kl_modes", fmt::format("'problem.kl_modes' ({}) must not exceed the {} nodes of the {}^{} grid "
                                   "(problem.resolution): a field on N nodes has at most N independent modes",
                                   c.poisson.kl_modes, nodes, c.resolution, c.spatial_dims()));
}

}  // namespace

ProblemConfig read_problem(Section& s, ProblemConfig c) {
  const auto pde = s.required_choice<PdeKind>("pde", c.pde, "the PDE to solve: " + choice_list<PdeKind>(),
                                              "the problem to solve");
  if (pde) c.pde = *pde;
  const auto n =
      s.required_integer("resolution", c.resolution, "nodes per axis, e.g. 64", at_least(3),
                         "nodes per axis (64 means 64 nodes, h = 1/63); burgers1d: nodes in x. Must "
                         "be divisible by 2^(network.depth - 1)",
                         INT_MAX);
  if (n) c.resolution = static_cast<int>(*n);
  // With an unknown pde every key is read (and type-checked), none is ruled out.
  const bool poisson = !pde || c.is_poisson();
  const bool burgers = !pde || c.pde == PdeKind::burgers1d;
  const std::string actual = fmt::format("problem.pde is '{}'", name_of(c.pde));

  {
    Section::Gate gate(s, poisson, "problem.pde poisson2d and poisson3d", actual);
    c.map = s.choice<ProblemMap>(
        "map", c.map,
        "`forward`: the network maps log nu to u; `inverse`: it maps an observed u (with log nu measured on "
        "the "
        "inflow boundary x = 0) to log nu, trained from data or, data-free, by the residual of the forward "
        "problem (docs/theory.md, \"The inverse map\")");
  }
  // burgers1d and the inverse map have no energy functional: their default is the residual; a
  // described Deck already holds its loss.
  const bool burgers_default =
      pde && (!c.is_poisson() || c.is_inverse()) && !s.describing() && c.loss == LossKind::energy;
  c.loss = s.choice<LossKind>(
      "loss", burgers_default ? LossKind::residual : c.loss,
      Doc("`energy`: the FEM energy functional; `residual`: the squared residual of the assembled system "
          "(poisson) or of the space-time Galerkin form (burgers1d); `least_squares`: the integral of the "
          "squared strong-form residual (burgers1d, viscosity 0)")
          .allowed("poisson: `energy`, `residual`; the inverse map: `residual`; burgers1d: `residual`, "
                   "`least_squares`")
          .default_is("`energy` (poisson), `residual` (burgers1d, the inverse map)"));
  if (pde && c.is_inverse() && c.loss != LossKind::residual)
    s.fail("loss",
           fmt::format("'problem.loss' is '{}', but the inverse map has only the residual (the energy is "
                       "a functional of u, not of nu)",
                       name_of(c.loss)));
  else if (pde && c.is_poisson() && c.loss == LossKind::least_squares)
    s.fail("loss",
           "'problem.loss' is 'least_squares', but poisson2d and poisson3d support: energy, residual");
  if (pde && c.pde == PdeKind::burgers1d && c.loss == LossKind::energy)
    s.fail("loss",
           "'problem.loss' is 'energy', but burgers1d supports: residual, least_squares (Burgers' "
           "equation is not the minimum of an energy)");

  {
    Section::Gate gate(s, poisson, "problem.pde poisson2d and poisson3d", actual);
    read_poisson(s, c.poisson);
    if (pde && c.is_poisson() && n && !s.describing() && s.ok("resolution") && s.ok("kl_modes"))
      check_kl_modes(s, c);
  }
  {
    Section::Gate gate(s, burgers, "problem.pde burgers1d", actual);
    read_burgers(s, c.burgers);
    if (pde && c.pde == PdeKind::burgers1d && c.loss == LossKind::least_squares && c.burgers.viscosity > 0 &&
        s.ok("viscosity"))
      s.fail("loss",
             fmt::format("'problem.loss' is 'least_squares', which needs problem.viscosity 0 (got {}): "
                         "the strong form needs u_xx, which Q1 elements do not have; use residual",
                         c.burgers.viscosity));
    // The resolved deck states the effective number of time nodes.
    if (pde && c.pde == PdeKind::burgers1d && c.burgers.time_resolution == 0 && !s.describing()) {
      c.burgers.time_resolution = c.resolution;
      s.resolved("time_resolution", c.resolution);
    }
  }
  return c;
}

}  // namespace pdegen::config

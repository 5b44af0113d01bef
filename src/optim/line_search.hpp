// Line searches for L-BFGS along a direction d from x0: the strong-Wolfe search (bracketing, then
// zoom with safeguarded cubic interpolation; Nocedal & Wright, Numerical Optimization, algorithms
// 3.5 and 3.6, in the form of PyTorch's torch.optim.lbfgs._strong_wolfe) and a backtracking search
// for the Armijo condition with safeguarded quadratic interpolation.
//
// The searches see the objective only through phi(t) = (loss, g.d, gradient) at x0 + t d. Every
// decision depends on those numbers alone, which are global (identical on every rank), so all ranks
// take the same path. A non-finite loss counts as +infinity: the search steps back.
#pragma once

#include <functional>
#include <memory>

#include "core/tensor.hpp"

namespace pdegen {

struct LinePoint {
  double t = 0;                        // step length along d
  double f = 0;                        // loss at x0 + t d (+infinity when not finite)
  double gtd = 0;                      // directional derivative g.d there
  std::shared_ptr<const Tensor> grad;  // the gradient there (held as long as a point refers to it)
};

// Evaluates the objective at x0 + t d.
using LineFunction = std::function<LinePoint(double t)>;

struct LineSearchResult {
  LinePoint point;  // the accepted point; the start (t = 0) when no acceptable step was found
  int evaluations = 0;
};

// The minimiser of the cubic through (x1, f1, g1) and (x2, f2, g2), clamped to [lo, hi]; the middle
// of [lo, hi] when the cubic has no minimiser or the numbers are not finite.
double cubic_minimum(double x1, double f1, double g1, double x2, double f2, double g2, double lo, double hi);

// Strong Wolfe: f(t) <= f0 + c1 t g0.d and |g(t).d| <= c2 |g0.d|, starting at step `t`.
// `start` is phi(0) with gtd < 0; at most `max_evaluations` calls of phi; the zoom stops when the
// bracket is shorter than tolerance_change / max|d|.
LineSearchResult strong_wolfe_search(const LineFunction& phi, const LinePoint& start, double t,
                                     double d_max_abs, double tolerance_change, int max_evaluations,
                                     double c1 = 1e-4, double c2 = 0.9);

// Armijo backtracking: f(t) <= f0 + c1 t g0.d, shrinking t by a quadratic-interpolation factor
// clamped to [0.1, 0.5]; gives up (returns `start`) after max_evaluations or once t max|d| falls
// below tolerance_change.
LineSearchResult backtracking_search(const LineFunction& phi, const LinePoint& start, double t,
                                     double d_max_abs, double tolerance_change, int max_evaluations,
                                     double c1 = 1e-4);

}  // namespace pdegen

// Strong-Wolfe and backtracking line searches (see line_search.hpp).
#include "optim/line_search.hpp"

#include <algorithm>
#include <array>
#include <cmath>

namespace pdegen {

double cubic_minimum(double x1, double f1, double g1, double x2, double f2, double g2, double lo, double hi) {
  const double middle = (lo + hi) / 2;
  const double d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2);
  const double d2_square = d1 * d1 - g1 * g2;
  if (!(d2_square >= 0)) return middle;  // also when not finite
  const double d2 = std::sqrt(d2_square);
  const double t = x1 <= x2 ? x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
                            : x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2));
  if (!std::isfinite(t)) return middle;
  return std::min(std::max(t, lo), hi);
}

LineSearchResult strong_wolfe_search(const LineFunction& phi, const LinePoint& start, double t,
                                     double d_max_abs, double tolerance_change, int max_evaluations,
                                     double c1, double c2) {
  const double f0 = start.f, gtd0 = start.gtd;
  int evaluations = 0;
  auto evaluate = [&](double at) {
    ++evaluations;
    return phi(at);
  };
  auto sufficient_decrease = [&](const LinePoint& p) { return p.f <= f0 + c1 * p.t * gtd0; };
  auto curvature = [&](const LinePoint& p) { return std::abs(p.gtd) <= -c2 * gtd0; };

  // Bracketing: grow the step until an interval [lo, hi] holds a point of the strong Wolfe
  // conditions, or a point of them is found on the way.
  LinePoint current = evaluate(t), previous = start;
  std::array<LinePoint, 2> bracket;
  bool have_bracket = false, done = false;
  int steps = 0;  // points beyond the first, as PyTorch's ls_iter
  while (evaluations < max_evaluations) {
    if (!sufficient_decrease(current) || (steps > 1 && current.f >= previous.f)) {
      bracket = {previous, current};
      have_bracket = true;
      break;
    }
    if (curvature(current)) {
      done = true;
      break;
    }
    if (current.gtd >= 0) {
      bracket = {previous, current};
      have_bracket = true;
      break;
    }
    // Extrapolate with a cubic, between 1.01 t and 10 t.
    const double min_step = current.t + 0.01 * (current.t - previous.t), max_step = current.t * 10;
    const double next = cubic_minimum(previous.t, previous.f, previous.gtd, current.t, current.f, current.gtd,
                                      min_step, max_step);
    previous = current;
    current = evaluate(next);
    ++steps;
  }
  if (done) return {current, evaluations};
  if (!have_bracket) {
    // Out of evaluations while still extrapolating: the last point if it decreased enough.
    if (sufficient_decrease(current) && std::isfinite(current.f)) return {current, evaluations};
    return {start, evaluations};
  }

  // Zoom: shrink the bracket, keeping at `low` the end with the lower loss.
  bool insufficient_progress = false;
  int low = bracket[0].f <= bracket[1].f ? 0 : 1;
  while (evaluations < max_evaluations) {
    const double lo_t = std::min(bracket[0].t, bracket[1].t), hi_t = std::max(bracket[0].t, bracket[1].t);
    if ((hi_t - lo_t) * d_max_abs < tolerance_change) break;
    double next = cubic_minimum(bracket[0].t, bracket[0].f, bracket[0].gtd, bracket[1].t, bracket[1].f,
                                bracket[1].gtd, lo_t, hi_t);
    // A point too close to an end makes little progress: the second time, move it into the
    // interval by a tenth of its length.
    const double eps = 0.1 * (hi_t - lo_t);
    if (std::min(hi_t - next, next - lo_t) < eps) {
      if (insufficient_progress || next >= hi_t || next <= lo_t) {
        next = std::abs(next - hi_t) < std::abs(next - lo_t) ? hi_t - eps : lo_t + eps;
        insufficient_progress = false;
      } else {
        insufficient_progress = true;
      }
    } else {
      insufficient_progress = false;
    }
    const LinePoint p = evaluate(next);
    const int high = 1 - low;
    if (!sufficient_decrease(p) || p.f >= bracket[low].f) {
      bracket[high] = p;
      low = bracket[0].f <= bracket[1].f ? 0 : 1;
    } else {
      if (curvature(p)) {
        done = true;
      } else if (p.gtd * (bracket[high].t - bracket[low].t) >= 0) {
        bracket[high] = bracket[low];
      }
      bracket[low] = p;
    }
    if (done) break;
  }
  const LinePoint& best = bracket[low];
  // The low end always decreased the loss unless it is the start itself.
  if (best.t == 0 || !std::isfinite(best.f) || !sufficient_decrease(best)) return {start, evaluations};
  return {best, evaluations};
}

LineSearchResult backtracking_search(const LineFunction& phi, const LinePoint& start, double t,
                                     double d_max_abs, double tolerance_change, int max_evaluations,
                                     double c1) {
  const double f0 = start.f, gtd0 = start.gtd;
  int evaluations = 0;
  while (evaluations < max_evaluations && t * d_max_abs >= tolerance_change) {
    LinePoint p = phi(t);
    ++evaluations;
    if (p.f <= f0 + c1 * t * gtd0) return {std::move(p), evaluations};
    // Minimiser of the quadratic through f0, gtd0 and f(t), kept in [0.1 t, 0.5 t].
    const double curvature = 2 * (p.f - f0 - gtd0 * t);
    const double next = std::isfinite(p.f) && curvature > 0 ? -gtd0 * t * t / curvature : 0.5 * t;
    t = std::clamp(next, 0.1 * t, 0.5 * t);
  }
  return {start, evaluations};
}

}  // namespace pdegen

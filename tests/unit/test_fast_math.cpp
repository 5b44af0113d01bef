// fast_exp against std::exp in double over a dense sweep of fp32 inputs (every 97th bit pattern from
// -inf to +inf, which samples every binade alike), and its saturation, underflow and NaN behaviour.
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "core/fast_math.hpp"
#include "testing.hpp"

using namespace pdegen;

namespace {

constexpr float inf = std::numeric_limits<float>::infinity();
const double ln_flt_max = std::log(static_cast<double>(std::numeric_limits<float>::max()));
const double ln_flt_min = std::log(static_cast<double>(std::numeric_limits<float>::min()));
const double smallest_subnormal = std::ldexp(1.0, -149);

// Distance between `exact` and the next fp32 away from zero: one unit in the last place of the result.
double ulp_of(double exact) {
  const auto f = static_cast<float>(exact);
  return static_cast<double>(std::nextafter(f, inf)) - static_cast<double>(f);
}

// Calls f(x) for every 97th fp32 bit pattern that is a finite number, negative and positive.
template <class F>
void sweep(F&& f) {
  for (uint32_t sign : {0u, 0x80000000u})
    for (uint32_t bits = 0; bits < 0x7f800000u; bits += 97) f(std::bit_cast<float>(sign | bits));
}

}  // namespace

TEST_CASE("fast_exp is within 1.5 ulp (relative error below 1.2e-7) wherever e^x is a normal float") {
  double max_ulps = 0, max_rel = 0;
  float worst = 0;
  int64_t checked = 0;
  sweep([&](float x) {
    const double exact = std::exp(static_cast<double>(x));
    if (x < ln_flt_min || x > ln_flt_max) return;
    const double got = fast_exp(x), err = std::abs(got - exact);
    if (err / ulp_of(exact) > max_ulps) {
      max_ulps = err / ulp_of(exact);
      worst = x;
    }
    max_rel = std::max(max_rel, err / exact);
    ++checked;
  });
  CAPTURE(worst);
  CAPTURE(max_rel);
  MESSAGE("fast_exp over ", checked, " inputs: max ", max_ulps, " ulp, max relative error ", max_rel);
  CHECK(checked > 10'000'000);
  CHECK(max_ulps <= 1.5);
  CHECK(max_rel < 1.2e-7);
}

TEST_CASE("fast_exp underflows gradually: subnormal results within one subnormal step, then exactly 0") {
  double max_steps = 0;
  int64_t negative = 0;
  sweep([&](float x) {
    if (x >= ln_flt_min) return;
    const double exact = std::exp(static_cast<double>(x)), got = fast_exp(x);
    max_steps = std::max(max_steps, std::abs(got - exact) / smallest_subnormal);
    negative += got < 0;
  });
  CHECK(max_steps <= 1.0);
  CHECK(negative == 0);
  CHECK(fast_exp(-100.0f) > 0);  // e^-100 = 3.7e-44, a subnormal, not flushed
  CHECK(fast_exp(-104.0f) == 0);
  CHECK(fast_exp(-1e30f) == 0);
  CHECK(fast_exp(-inf) == 0);
}

TEST_CASE("fast_exp overflows to +inf exactly above ln(FLT_MAX) and passes NaN through") {
  // The largest float below ln(FLT_MAX), whose e^x is finite, and the next one, whose is not.
  auto below = static_cast<float>(ln_flt_max);
  if (static_cast<double>(below) > ln_flt_max) below = std::nextafter(below, 0.0f);
  CHECK(std::isfinite(fast_exp(below)));
  CHECK(std::abs(fast_exp(below) - std::exp(static_cast<double>(below))) <=
        1.5 * ulp_of(std::exp(static_cast<double>(below))));
  CHECK(fast_exp(std::nextafter(below, inf)) == inf);
  CHECK(fast_exp(89.0f) == inf);
  CHECK(fast_exp(1e30f) == inf);
  CHECK(fast_exp(inf) == inf);
  CHECK(std::isnan(fast_exp(std::numeric_limits<float>::quiet_NaN())));
  CHECK(std::isnan(fast_exp(-std::numeric_limits<float>::quiet_NaN())));
  CHECK(fast_exp(0.0f) == 1.0f);
  CHECK(fast_exp(-0.0f) == 1.0f);
}

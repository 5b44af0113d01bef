// Dynamic loss scaling: overflow detection of the unscale pass (inf, -inf, nan anywhere, including
// the last element, on every backend), skipping, growth after N clean steps, the counter reset on
// overflow, and the bounds.
#include <cmath>
#include <limits>

#include "backends.hpp"
#include "optim/loss_scaler.hpp"
#include "testing.hpp"

using namespace pdegen;
using namespace pdegen::testing;

namespace {

// Runs unscale_and_check on `values` (as fp32) on `device`; returns the flag and the unscaled values.
std::pair<bool, Vec> unscale(const Vec& values, double inv_scale, Device device) {
  Tensor grads = tensor_from(values, Shape{static_cast<int64_t>(values.size())}).to(device);
  const bool overflow = unscale_and_check(grads, inv_scale);
  return {overflow, values_of(grads.to(Device::cpu))};
}

LossScalerConfig small_interval(int64_t interval) {
  LossScalerConfig c;
  c.growth_interval = interval;
  return c;
}

}  // namespace

TEST_CASE("unscaling multiplies every gradient by 1 / scale and reports no overflow for finite values") {
  for (Device device : test_devices()) {
    CAPTURE(device_name(device));
    // 100003 values: several blocks and a ragged tail; the largest finite float stays finite.
    Vec g = random_vec(100003, 1, -1e4, 1e4);
    g[17] = std::numeric_limits<float>::max();
    g[18] = -std::numeric_limits<float>::max();
    const auto [overflow, got] = unscale(g, 1.0 / 65536, device);
    CHECK_FALSE(overflow);
    Vec want = values_of(tensor_from(g, Shape{static_cast<int64_t>(g.size())}));
    for (auto& v : want) v = static_cast<float>(static_cast<float>(v) * (1.0f / 65536));
    CHECK(got == want);
  }
}

TEST_CASE("unscaling reports inf, -inf and nan wherever they are, the last element included") {
  const double specials[] = {std::numeric_limits<double>::infinity(),
                             -std::numeric_limits<double>::infinity(),
                             std::numeric_limits<double>::quiet_NaN()};
  for (Device device : test_devices()) {
    CAPTURE(device_name(device));
    for (size_t n : {size_t{1}, size_t{7}, size_t{4099}}) {
      for (double special : specials) {
        for (size_t where : {size_t{0}, n / 2, n - 1}) {
          CAPTURE(n);
          CAPTURE(special);
          CAPTURE(where);
          Vec g = random_vec(n, 2);
          g[where] = special;
          CHECK(unscale(g, 0.5, device).first);
        }
      }
    }
    // A value that overflows fp32 only when converted (1e39 as fp32 is inf): caught too.
    CHECK(unscale(Vec{1.0, 1e39}, 1.0, device).first);
    // An empty buffer has nothing to overflow.
    CHECK_FALSE(unscale(Vec{}, 1.0, device).first);
  }
}

TEST_CASE("the scale starts at 2^16 and an overflow halves it and skips the step") {
  LossScaler scaler;
  CHECK(scaler.scale() == 65536.0);
  CHECK_FALSE(scaler.update(true));
  CHECK(scaler.scale() == 32768.0);
  CHECK(scaler.skipped_steps() == 1);
  CHECK(scaler.update(false));
  CHECK(scaler.scale() == 32768.0);
  CHECK(scaler.skipped_steps() == 1);
}

TEST_CASE("the scale doubles after growth_interval clean steps in a row, not before") {
  LossScaler scaler(small_interval(3));
  CHECK(scaler.update(false));
  CHECK(scaler.update(false));
  CHECK(scaler.scale() == 65536.0);
  CHECK(scaler.clean_steps() == 2);
  CHECK(scaler.update(false));
  CHECK(scaler.scale() == 131072.0);
  CHECK(scaler.clean_steps() == 0);
  for (int i = 0; i < 3; ++i) scaler.update(false);
  CHECK(scaler.scale() == 262144.0);
}

TEST_CASE("an overflow resets the clean-step counter") {
  LossScaler scaler(small_interval(3));
  scaler.update(false);
  scaler.update(false);
  CHECK(scaler.clean_steps() == 2);
  CHECK_FALSE(scaler.update(true));
  CHECK(scaler.clean_steps() == 0);
  CHECK(scaler.scale() == 32768.0);
  // Two clean steps after the overflow are not enough: the count started again.
  scaler.update(false);
  scaler.update(false);
  CHECK(scaler.scale() == 32768.0);
  scaler.update(false);
  CHECK(scaler.scale() == 65536.0);
}

TEST_CASE("the scale stays within min_scale and max_scale") {
  LossScalerConfig c = small_interval(1);
  c.initial_scale = 4;
  c.min_scale = 1;
  c.max_scale = 16;
  LossScaler scaler(c);
  for (int i = 0; i < 5; ++i) CHECK(scaler.update(false));
  CHECK(scaler.scale() == 16.0);
  for (int i = 0; i < 5; ++i) CHECK_FALSE(scaler.update(true));
  CHECK(scaler.scale() == 1.0);
  CHECK(scaler.skipped_steps() == 5);
  // Growth resumes from the floor.
  scaler.update(false);
  CHECK(scaler.scale() == 2.0);
}

TEST_CASE("restore sets the checkpointed state and rejects a scale outside the bounds") {
  LossScaler scaler(small_interval(4));
  scaler.restore(1024, 3);
  CHECK(scaler.scale() == 1024.0);
  CHECK(scaler.clean_steps() == 3);
  scaler.update(false);
  CHECK(scaler.scale() == 2048.0);
  CHECK_THROWS_AS(scaler.restore(0.5, 0), Error);
  CHECK_THROWS_AS(scaler.restore(1e9, 0), Error);
}

TEST_CASE("loss scaler settings that make no scale are user errors") {
  for (auto bad :
       {+[](LossScalerConfig& c) { c.growth_factor = 1; }, +[](LossScalerConfig& c) { c.backoff_factor = 1; },
        +[](LossScalerConfig& c) { c.growth_interval = 0; }, +[](LossScalerConfig& c) { c.min_scale = 0; },
        +[](LossScalerConfig& c) { c.initial_scale = 1e9; }}) {
    LossScalerConfig c;
    bad(c);
    CHECK_THROWS_AS(LossScaler{c}, UserError);
  }
}

// Counter-based RNG: Random123 known answers, reproducibility by (seed, stream, index), statistics.
#include <cmath>
#include <set>

#include "core/rng.hpp"
#include "testing.hpp"

using namespace pdegen;

TEST_CASE("philox4x32-10 reproduces Random123's known-answer vectors") {
  Words4 a = philox4x32_10(Words4{{0, 0, 0, 0}}, 0, 0);
  CHECK(a.v[0] == 0x6627e8d5u);
  CHECK(a.v[1] == 0xe169c58du);
  CHECK(a.v[2] == 0xbc57ac4cu);
  CHECK(a.v[3] == 0x9b00dbd8u);
  Words4 b =
      philox4x32_10(Words4{{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}}, 0xffffffffu, 0xffffffffu);
  CHECK(b.v[0] == 0x408f276du);
  CHECK(b.v[1] == 0x41c83b0eu);
  CHECK(b.v[2] == 0xa20bc7c6u);
  CHECK(b.v[3] == 0x6d5451fdu);
  Words4 c =
      philox4x32_10(Words4{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}}, 0xa4093822u, 0x299f31d0u);
  CHECK(c.v[0] == 0xd16cfe09u);
  CHECK(c.v[1] == 0x94fdccebu);
  CHECK(c.v[2] == 0x5001e420u);
  CHECK(c.v[3] == 0x24126ea1u);
}

TEST_CASE("the same (seed, stream, index) gives the same number in any order of evaluation") {
  std::vector<double> forward, backward(1000);
  for (uint64_t i = 0; i < 1000; ++i) forward.push_back(random_uniform(7, 3, i));
  for (int64_t i = 999; i >= 0; --i)
    backward[static_cast<size_t>(i)] = random_uniform(7, 3, static_cast<uint64_t>(i));
  CHECK(forward == backward);
  CHECK(random_uniform(7, 3, 5) != random_uniform(8, 3, 5));                  // seed matters
  CHECK(random_uniform(7, 3, 5) != random_uniform(7, 4, 5));                  // stream matters
  CHECK(random_uniform(7, 3, uint64_t{1} << 40) != random_uniform(7, 3, 0));  // high index bits matter
}

TEST_CASE("uniform and normal draws have the right moments") {
  const int n = 200000;
  double su = 0, su2 = 0, sn = 0, sn2 = 0, mn = 1, mx = 0;
  for (int i = 0; i < n; ++i) {
    const double u = random_uniform(1, 2, static_cast<uint64_t>(i));
    const double z = random_normal(1, 2, static_cast<uint64_t>(i));
    su += u;
    su2 += u * u;
    sn += z;
    sn2 += z * z;
    mn = std::min(mn, u);
    mx = std::max(mx, u);
  }
  // Tolerances are ~5 standard errors of the estimates for n = 2e5.
  CHECK(std::abs(su / n - 0.5) < 5 * std::sqrt(1.0 / 12 / n));
  CHECK(std::abs(su2 / n - su / n * su / n - 1.0 / 12) < 2e-3);
  CHECK(std::abs(sn / n) < 5 / std::sqrt(double(n)));
  CHECK(std::abs(sn2 / n - 1) < 5 * std::sqrt(2.0 / n));
  CHECK(mn >= 0);
  CHECK(mx < 1);
}

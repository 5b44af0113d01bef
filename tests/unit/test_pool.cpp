// MaxPool and AvgPool: forward against a naive fp64 window loop, backward against central
// differences of it (max pooling on inputs without ties, so the argmax cannot flip within h), plain
// and blocked, 2D and 3D, with and without padding and overlapping windows, on every backend; fp16/bf16
// storage on the GPU against the fp32 CPU layer.
#include <algorithm>
#include <limits>
#include <memory>

#include "device_testing.hpp"
#include "mixed_precision_testing.hpp"
#include "nn/pool.hpp"

using namespace pdegen;
using namespace pdegen::testing;

namespace {

struct Case {
  Shape shape;
  int block;
  PoolConfig config;
};

// Each configuration on a blocked 16-channel input and a plain 3-channel one.
std::vector<Case> cases_for(const std::vector<std::pair<Shape, PoolConfig>>& configs) {
  std::vector<Case> out;
  for (const auto& [shape, config] : configs) {
    Shape plain = shape;
    plain[1] = 3;
    out.push_back({shape, 16, config});
    out.push_back({plain, 1, config});
  }
  return out;
}

const std::vector<Case> max_cases = cases_for({
    {Shape{2, 16, 6, 7}, PoolConfig{2, 2, 0, 0}},     // the U-Net's 2x2, odd width floors
    {Shape{2, 16, 7, 6}, PoolConfig{2, 3, 2, 1}},     // overlapping windows, padding
    {Shape{2, 16, 4, 5, 6}, PoolConfig{3, 2, 0, 0}},  // 3D
    {Shape{2, 16, 5, 4, 5}, PoolConfig{3, 3, 2, 1}},
});

const std::vector<Case> avg_cases = cases_for({
    {Shape{2, 16, 6, 7}, PoolConfig{2, 2, 0, 0}},
    {Shape{2, 16, 7, 6}, PoolConfig{2, 3, 2, 1}},
    {Shape{2, 16, 5, 5}, PoolConfig{2, 3, 1, 1}},  // every border window overlaps the padding
    {Shape{2, 16, 4, 5, 6}, PoolConfig{3, 2, 0, 0}},
    {Shape{2, 16, 5, 4, 5}, PoolConfig{3, 3, 2, 1}},
});

// PyTorch's extent rule, written out independently of the layer.
Shape expected_output(const Shape& in, const PoolConfig& c) {
  Shape out = in;
  const int stride = c.stride ? c.stride : c.kernel;
  for (int i = 2; i < in.rank(); ++i) out[i] = (in[i] + 2 * c.padding - c.kernel) / stride + 1;
  return out;
}

// Naive pooling over N, C, spatial (2 or 3 axes), fp64. Average divides by k^ndim (padding counted).
Vec reference(const Vec& x, const Shape& in, const PoolConfig& c, bool is_max) {
  const Shape out = expected_output(in, c);
  const int nd = in.rank() - 2;
  const int stride = c.stride ? c.stride : c.kernel;
  int64_t window = 1;
  for (int a = 0; a < nd; ++a) window *= c.kernel;
  const int64_t planes = in[0] * in[1], S_in = in.spatial(), S_out = out.spatial();
  Vec y(static_cast<size_t>(planes * S_out));
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t o = 0; o < S_out; ++o) {
      int64_t opos[3], rem = o;
      for (int a = nd - 1; a >= 0; --a) {
        opos[a] = rem % out[2 + a];
        rem /= out[2 + a];
      }
      double acc = is_max ? -std::numeric_limits<double>::infinity() : 0.0;
      for (int64_t k = 0; k < window; ++k) {
        int64_t krem = k, idx = 0;
        bool inside = true;
        for (int a = nd - 1; a >= 0; --a) {
          const int64_t ka = krem % c.kernel;
          krem /= c.kernel;
          const int64_t i = opos[a] * stride - c.padding + ka;
          inside = inside && i >= 0 && i < in[2 + a];
        }
        if (!inside) continue;  // padding: -inf for max, 0 for the average
        krem = k;
        int64_t ipos[3];
        for (int a = nd - 1; a >= 0; --a) {
          ipos[a] = opos[a] * stride - c.padding + krem % c.kernel;
          krem /= c.kernel;
        }
        for (int a = 0; a < nd; ++a) idx = idx * in[2 + a] + ipos[a];
        const double v = x[static_cast<size_t>(p * S_in + idx)];
        acc = is_max ? std::max(acc, v) : acc + v;
      }
      y[static_cast<size_t>(p * S_out + o)] = is_max ? acc : acc / static_cast<double>(window);
    }
  return y;
}

// Distinct values 0.01 apart in random order: no ties, and the argmax of every window is stable
// under the 1e-5 perturbations of central differences.
Vec distinct_input(size_t n, uint64_t stream) {
  Vec x(n);
  for (size_t i = 0; i < n; ++i) x[i] = (static_cast<double>(i) - static_cast<double>(n) / 2) * 0.01;
  const Vec r = random_vec(n, stream, 0, 1);
  for (size_t i = n - 1; i > 0; --i)
    std::swap(x[i], x[static_cast<size_t>(r[i] * static_cast<double>(i + 1))]);
  return x;
}

// dx against central differences on every entry of small inputs, and on ~200 entries spread over
// larger ones (each difference costs two reference evaluations).
void check_gradient(const Vec& dx, const std::function<Vec(const Vec&)>& f, Vec x, const Vec& w) {
  const size_t step = std::max<size_t>(1, x.size() / 200) | 1;  // odd: no aliasing with the layout
  Vec got, want;
  for (size_t i = 0; i < x.size(); i += step) {
    const double keep = x[i], h = 1e-5;
    x[i] = keep + h;
    const double lp = dot(w, f(x));
    x[i] = keep - h;
    const double lm = dot(w, f(x));
    x[i] = keep;
    got.push_back(dx[i]);
    want.push_back((lp - lm) / (2 * h));
  }
  CHECK(rel_max_error(got, want) < 1e-4);
}

void check_forward_backward(Pool& layer, const Case& cs, bool is_max, Device device,
                            Mode mode = Mode::train) {
  CAPTURE(cs.shape.str());
  CAPTURE(cs.block);
  CAPTURE(cs.config.kernel);
  CAPTURE(cs.config.stride);
  CAPTURE(cs.config.padding);
  const Vec x = is_max ? distinct_input(static_cast<size_t>(cs.shape.numel()), 1)
                       : random_vec(static_cast<size_t>(cs.shape.numel()), 1);
  const Shape out = expected_output(cs.shape, cs.config);
  REQUIRE(layer.output_shape(cs.shape) == out);
  const Tensor y = layer.forward(tensor_on(device, x, cs.shape, cs.block), mode);
  CHECK(y.device() == device);
  CHECK(y.shape() == out);
  CHECK(y.channel_block() == cs.block);
  CHECK(rel_max_error(host_values(y), reference(x, cs.shape, cs.config, is_max)) < f32_tol);

  const Vec w = random_vec(static_cast<size_t>(out.numel()), 2);
  const Tensor dx = layer.backward(tensor_on(device, w, out, cs.block));
  CHECK(dx.device() == device);
  CHECK(dx.shape() == cs.shape);
  CHECK(dx.channel_block() == cs.block);
  const auto f = [&](const Vec& v) { return reference(v, cs.shape, cs.config, is_max); };
  check_gradient(host_values(dx), f, x, w);
}

}  // namespace

TEST_CASE("max pool takes each window's maximum and routes dy to it, plain and blocked, 2D and 3D") {
  for_each_device([](Device device) {
    for (const Case& cs : max_cases) {
      MaxPool layer(cs.config);
      CHECK(layer.kind() == "max_pool");
      check_forward_backward(layer, cs, true, device);
    }
  });
}

TEST_CASE("avg pool divides every window by k^ndim with padding counted, and its backward matches") {
  for_each_device([](Device device) {
    for (const Case& cs : avg_cases) {
      AvgPool layer(cs.config);
      CHECK(layer.kind() == "avg_pool");
      check_forward_backward(layer, cs, false, device);
    }
  });
}

TEST_CASE("max pool backward works after an eval-mode forward") {
  for_each_device([](Device device) {
    MaxPool layer(max_cases[2].config);
    check_forward_backward(layer, max_cases[2], true, device, Mode::eval);
  });
}

TEST_CASE("one pooling layer serves changing shapes and layouts") {
  for_each_device([](Device device) {
    const PoolConfig config{2, 3, 2, 1};
    MaxPool max_layer(config);
    AvgPool avg_layer(config);
    for (const Case& cs : {Case{Shape{2, 16, 7, 6}, 16, config}, Case{Shape{1, 16, 9, 5}, 1, config},
                           Case{Shape{2, 16, 7, 6}, 16, config}}) {
      check_forward_backward(max_layer, cs, true, device);
      check_forward_backward(avg_layer, cs, false, device);
    }
  });
}

TEST_CASE("pooling output extents are floor((in + 2p - k) / s) + 1") {
  CHECK(MaxPool({2, 2, 0, 0}).output_shape(Shape{4, 16, 65, 64}) == Shape{4, 16, 32, 32});
  CHECK(MaxPool({2, 3, 2, 1}).output_shape(Shape{1, 8, 7, 8}) == Shape{1, 8, 4, 4});
  CHECK(AvgPool({3, 3, 1, 1}).output_shape(Shape{1, 8, 5, 6, 7}) == Shape{1, 8, 5, 6, 7});
  CHECK(AvgPool({3, 2, 0, 0}).output_shape(Shape{1, 8, 4, 4, 5}) == Shape{1, 8, 2, 2, 2});
}

TEST_CASE("pooling counts kernel^ndim flops per output element") {
  CHECK(MaxPool({2, 2, 0, 0}).flops(Shape{4, 16, 64, 64}).forward == doctest::Approx(4.0 * 4 * 16 * 32 * 32));
  CHECK(AvgPool({3, 3, 2, 1}).flops(Shape{1, 1, 8, 8, 8}).forward == doctest::Approx(27.0 * 4 * 4 * 4));
}

TEST_CASE("pooling rejects padding above kernel / 2 and inputs of the wrong rank") {
  CHECK_THROWS_AS(MaxPool({2, 2, 0, 2}), Error);
  CHECK_THROWS_AS(AvgPool({4, 2, 0, 0}), Error);
  for_each_device([](Device device) {
    MaxPool layer({2, 2, 0, 0});
    CHECK_THROWS_AS(layer.forward(Tensor::zeros(Shape{1, 3, 4, 4, 4}, DType::f32, device), Mode::train),
                    Error);
    CHECK_THROWS_AS(layer.backward(Tensor::zeros(Shape{1, 3, 2, 2}, DType::f32, device)), Error);
  });
}

namespace {

// Values k / 64, |k| <= 48 (exact in fp16 and bf16), that differ within every window of the test
// shapes: k = 37 i mod 97 - 48 takes distinct values on any 97 consecutive logical indices i, and a
// window spans fewer. (distinct_input's 0.01 steps would tie after rounding to bf16.)
Vec distinct_in_16_bits(size_t n) {
  Vec x(n);
  for (size_t i = 0; i < n; ++i) x[i] = static_cast<double>(static_cast<int64_t>(i * 37 % 97) - 48) / 64;
  return x;
}

}  // namespace

TEST_CASE(
    "max and avg pool in fp16 and bf16 on the GPU and bf16 on the CPU match fp32 within 16-bit rounding") {
  for_each_reduced_precision_backend([](Device device, const HalfType& type16) {
    for (bool is_max : {true, false})
      for (const Case& cs : is_max ? max_cases : avg_cases) {
        CAPTURE(is_max);
        CAPTURE(cs.shape.str());
        CAPTURE(cs.block);
        CAPTURE(cs.config.kernel);
        CAPTURE(cs.config.padding);
        const Shape out = expected_output(cs.shape, cs.config);
        const Vec x = is_max ? distinct_in_16_bits(static_cast<size_t>(cs.shape.numel()))
                             : random_vec(static_cast<size_t>(cs.shape.numel()), 1);
        const Vec w = random_vec(static_cast<size_t>(out.numel()), 2);
        std::unique_ptr<Pool> cpu, gpu;
        if (is_max) {
          cpu = std::make_unique<MaxPool>(cs.config);
          gpu = std::make_unique<MaxPool>(cs.config);
        } else {
          cpu = std::make_unique<AvgPool>(cs.config);
          gpu = std::make_unique<AvgPool>(cs.config);
        }
        const Vec y32 = values_of(
            cpu->forward(tensor_from(rounded_to(type16.dtype, x), cs.shape, cs.block), Mode::train));
        const Vec dx32 = values_of(cpu->backward(tensor_from(rounded_to(type16.dtype, w), out, cs.block)));

        const Tensor y = gpu->forward(tensor_as(device, type16.dtype, x, cs.shape, cs.block), Mode::train);
        CHECK(y.device() == device);
        CHECK(y.dtype() == type16.dtype);
        CHECK(y.channel_block() == cs.block);
        // A maximum is one of the (already rounded) inputs: exact. An average: one rounding.
        if (is_max)
          CHECK(values_as_f32(y) == y32);
        else
          CHECK(rel_max_error(values_as_f32(y), y32) < 2 * type16.u);

        const Tensor dx = gpu->backward(tensor_as(device, type16.dtype, w, out, cs.block));
        CHECK(dx.device() == device);
        CHECK(dx.dtype() == type16.dtype);
        CHECK(dx.channel_block() == cs.block);
        // The sum over the windows holding each input (divided by k^ndim for the average): one rounding.
        CHECK(rel_max_error(values_as_f32(dx), dx32) < 2 * type16.u);
      }
  });
}

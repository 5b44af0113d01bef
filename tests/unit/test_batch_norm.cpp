// BatchNorm: forward against an fp64 two-pass reference, backward (dx, dgamma, dbeta) against central
// differences of it, in train and eval mode, plain and blocked, 2D and 3D; running statistics; the
// StatsAllreduce hook, including a simulated second rank (the synchronized batch norm property); on
// every backend (running statistics live on the host on both); fp16/bf16 storage on the GPU against
// the fp32 CPU layer.
#include <cmath>

#include "device_testing.hpp"
#include "mixed_precision_testing.hpp"
#include "nn/batch_norm.hpp"

using namespace pdegen;
using namespace pdegen::testing;

namespace {

constexpr double eps = 1e-5;

// y = gamma (x - mean) / sqrt(var + eps) + beta with the given per-channel mean and (biased) variance.
Vec normalise(const Vec& x, const Extents& d, const Vec& mean, const Vec& var, const Vec& gamma,
              const Vec& beta) {
  Vec y(x.size());
  for (int64_t n = 0; n < d.N; ++n)
    for (int64_t c = 0; c < d.C; ++c) {
      const auto k = static_cast<size_t>(c);
      for (int64_t s = 0; s < d.S; ++s)
        y[d.at(n, c, s)] = gamma[k] * (x[d.at(n, c, s)] - mean[k]) / std::sqrt(var[k] + eps) + beta[k];
    }
  return y;
}

// Batch mean and biased variance per channel, two-pass.
std::pair<Vec, Vec> batch_stats(const Vec& x, const Extents& d) {
  Vec mean(static_cast<size_t>(d.C), 0.0), var(static_cast<size_t>(d.C), 0.0);
  const double M = static_cast<double>(d.N * d.S);
  for (int64_t c = 0; c < d.C; ++c) {
    const auto k = static_cast<size_t>(c);
    for (int64_t n = 0; n < d.N; ++n)
      for (int64_t s = 0; s < d.S; ++s) mean[k] += x[d.at(n, c, s)] / M;
    for (int64_t n = 0; n < d.N; ++n)
      for (int64_t s = 0; s < d.S; ++s)
        var[k] += (x[d.at(n, c, s)] - mean[k]) * (x[d.at(n, c, s)] - mean[k]) / M;
  }
  return {mean, var};
}

Vec train_reference(const Vec& x, const Extents& d, const Vec& gamma, const Vec& beta) {
  const auto [mean, var] = batch_stats(x, d);
  return normalise(x, d, mean, var, gamma, beta);
}

// A finalized layer "bn" with random gamma in [0.5, 1.5] and beta in [-1, 1] (or none without affine).
struct Fixture : DeviceNormFixture<BatchNorm> {
  Fixture(Device on, int64_t C, bool affine, double momentum = 0.1)
      : DeviceNormFixture(on, "bn", BatchNormConfig{C, eps, momentum, affine}) {}
};

// Random running statistics written into the layer: mean in [-2, 2], variance in [0.2, 3].
std::pair<Vec, Vec> set_running_stats(Fixture& f, const Extents& d, uint64_t stream) {
  const Vec mean = random_vec(static_cast<size_t>(d.C), stream, -2, 2);
  const Vec var = random_vec(static_cast<size_t>(d.C), stream + 1, 0.2, 3);
  copy_into(f.layer.running_mean(), mean);
  copy_into(f.layer.running_var(), var);
  return {mean, var};
}

// Input with per-channel offsets and scales, so that normalisation has something to remove.
Vec channel_input(const Extents& d, uint64_t stream) {
  Vec x = random_vec(static_cast<size_t>(d.N * d.C * d.S), stream);
  const Vec offset = random_vec(static_cast<size_t>(d.C), stream + 100, -3, 3);
  const Vec scale = random_vec(static_cast<size_t>(d.C), stream + 200, 0.5, 4);
  for (int64_t n = 0; n < d.N; ++n)
    for (int64_t c = 0; c < d.C; ++c)
      for (int64_t s = 0; s < d.S; ++s)
        x[d.at(n, c, s)] = offset[static_cast<size_t>(c)] + scale[static_cast<size_t>(c)] * x[d.at(n, c, s)];
  return x;
}

}  // namespace

TEST_CASE("batch norm train forward normalises with the batch mean and biased variance") {
  for_each_device([](Device device) {
    for_each_norm_case([&](const NormCase& cs) {
      const Extents d(cs.shape);
      Fixture f(device, d.C, cs.affine);
      check_norm_forward_on(
          f, cs, Mode::train, channel_input(d, 1),
          [&](const Vec& v, const Vec& g, const Vec& b) { return train_reference(v, d, g, b); });
    });
  });
}

TEST_CASE("batch norm train backward matches central differences for dx, dgamma and dbeta") {
  for_each_device([](Device device) {
    for_each_norm_case([&](const NormCase& cs) {
      const Extents d(cs.shape);
      Fixture f(device, d.C, cs.affine);
      const Vec x = channel_input(d, 2);
      const Vec w = random_vec(x.size(), 3);
      check_norm_backward_on(f, cs, Mode::train, x, w, [&](const Vec& v, const Vec& g, const Vec& b) {
        return train_reference(v, d, g, b);
      });
    });
  });
}

TEST_CASE("batch norm eval mode normalises with the running statistics and leaves them unchanged") {
  for_each_device([](Device device) {
    for_each_norm_case([&](const NormCase& cs) {
      const Extents d(cs.shape);
      Fixture f(device, d.C, cs.affine);
      const auto [mean, var] = set_running_stats(f, d, 20);
      check_norm_forward_on(
          f, cs, Mode::eval, channel_input(d, 4),
          [&](const Vec& v, const Vec& g, const Vec& b) { return normalise(v, d, mean, var, g, b); });
      CHECK(rel_max_error(values_of(f.layer.running_mean()), mean) < 1e-7);
      CHECK(rel_max_error(values_of(f.layer.running_var()), var) < 1e-7);
    });
  });
}

TEST_CASE("batch norm eval backward matches central differences with the statistics held constant") {
  for_each_device([](Device device) {
    for_each_norm_case([&](const NormCase& cs) {
      const Extents d(cs.shape);
      Fixture f(device, d.C, cs.affine);
      const auto [mean, var] = set_running_stats(f, d, 22);
      const Vec x = channel_input(d, 5);
      const Vec w = random_vec(x.size(), 6);
      check_norm_backward_on(f, cs, Mode::eval, x, w, [&](const Vec& v, const Vec& g, const Vec& b) {
        return normalise(v, d, mean, var, g, b);
      });
    });
  });
}

TEST_CASE("running statistics after two train steps follow the momentum rule with the unbiased variance") {
  for_each_device([](Device device) {
    for (const NormCase& cs : {norm_cases[0], norm_cases[2], norm_cases[3]}) {
      CAPTURE(cs.shape.str());
      CAPTURE(cs.block);
      const Extents d(cs.shape);
      const double m = 0.3;
      Fixture f(device, d.C, true, m);
      const double M = static_cast<double>(d.N * d.S);
      // PyTorch's initial values.
      Vec mean(static_cast<size_t>(d.C), 0.0), var(static_cast<size_t>(d.C), 1.0);
      for (uint64_t step : {30, 31}) {
        const Vec x = channel_input(d, step);
        f.layer.forward(f.input(x, cs), Mode::train);
        const auto [bm, bv] = batch_stats(x, d);
        for (size_t c = 0; c < mean.size(); ++c) {
          mean[c] = (1 - m) * mean[c] + m * bm[c];
          var[c] = (1 - m) * var[c] + m * bv[c] * M / (M - 1);
        }
      }
      CHECK(rel_max_error(values_of(f.layer.running_mean()), mean) < f32_tol);
      CHECK(rel_max_error(values_of(f.layer.running_var()), var) < f32_tol);
    }
  });
}

TEST_CASE(
    "the stats hook gets 2C+1 values in forward and 2C in backward, and doubling counts shows in y and dx") {
  for_each_device([](Device device) {
    for (const NormCase& cs : {norm_cases[0], norm_cases[2], norm_cases[3]}) {
      CAPTURE(cs.shape.str());
      CAPTURE(cs.block);
      const Extents d(cs.shape);
      const auto C = static_cast<int>(d.C);
      Fixture f(device, d.C, true);
      std::vector<int> calls;
      // Forward: only the element count doubles (as if another rank held as many elements, all zero);
      // backward: both sums double. Neither is a no-op, so a layer that skips the hook fails.
      f.layer.set_stats_allreduce([&](double* data, int count) {
        calls.push_back(count);
        if (count == 2 * C + 1)
          data[2 * C] *= 2;
        else
          for (int i = 0; i < count; ++i) data[i] *= 2;
      });
      const Vec x = channel_input(d, 7);
      const Vec w = random_vec(x.size(), 8);
      const Tensor y = f.layer.forward(f.input(x, cs), Mode::train);
      const Tensor dx = f.layer.backward(f.input(w, cs));
      CHECK(calls == std::vector<int>{2 * C + 1, 2 * C});

      // Closed forms with global count 2M: mean = sum x / 2M, var = sum x^2 / 2M - mean^2, and
      // dx = gamma inv_std (dy - 2 sum dy / 2M - xhat 2 sum(dy xhat) / 2M).
      const double M = static_cast<double>(d.N * d.S);
      Vec mean(static_cast<size_t>(C), 0.0), var(static_cast<size_t>(C), 0.0);
      for (int64_t c = 0; c < d.C; ++c) {
        const auto k = static_cast<size_t>(c);
        double s = 0, q = 0;
        for (int64_t n = 0; n < d.N; ++n)
          for (int64_t i = 0; i < d.S; ++i) {
            s += x[d.at(n, c, i)];
            q += x[d.at(n, c, i)] * x[d.at(n, c, i)];
          }
        mean[k] = s / (2 * M);
        var[k] = q / (2 * M) - mean[k] * mean[k];
      }
      CHECK(rel_max_error(host_values(y), normalise(x, d, mean, var, f.gamma, f.beta)) < f32_tol);
      CHECK(rel_max_error(host_values(y), train_reference(x, d, f.gamma, f.beta)) > 1e-2);

      Vec want(x.size());
      for (int64_t c = 0; c < d.C; ++c) {
        const auto k = static_cast<size_t>(c);
        const double inv_std = 1 / std::sqrt(var[k] + eps);
        double sum_dy = 0, sum_dy_xhat = 0;
        for (int64_t n = 0; n < d.N; ++n)
          for (int64_t i = 0; i < d.S; ++i) {
            sum_dy += w[d.at(n, c, i)];
            sum_dy_xhat += w[d.at(n, c, i)] * (x[d.at(n, c, i)] - mean[k]) * inv_std;
          }
        for (int64_t n = 0; n < d.N; ++n)
          for (int64_t i = 0; i < d.S; ++i) {
            const size_t j = d.at(n, c, i);
            const double xhat = (x[j] - mean[k]) * inv_std;
            want[j] = f.gamma[k] * inv_std * (w[j] - sum_dy / M - xhat * sum_dy_xhat / M);
          }
      }
      CHECK(rel_max_error(host_values(dx), want) < 1e-4);
    }
  });
}

TEST_CASE("a stats hook adding a second rank's batch gives the union-batch output and gradient") {
  for_each_device([](Device device) {
    for (const NormCase& cs : {norm_cases[0], norm_cases[2], norm_cases[3]}) {
      CAPTURE(cs.shape.str());
      CAPTURE(cs.block);
      const Extents d(cs.shape);
      const auto C = static_cast<int>(d.C);
      Fixture f(device, d.C, true);

      // The other rank: its batch x2 (same shape), its dL/dy2 = w2, and what an allreduce would add.
      const Vec x2 = channel_input(d, 9), w2 = random_vec(x2.size(), 10);
      Vec mean(static_cast<size_t>(C)), inv_std(static_cast<size_t>(C));
      f.layer.set_stats_allreduce([&](double* data, int count) {
        const double M = static_cast<double>(d.N * d.S);
        for (int64_t c = 0; c < d.C; ++c)
          for (int64_t n = 0; n < d.N; ++n)
            for (int64_t i = 0; i < d.S; ++i) {
              const size_t j = d.at(n, c, i);
              if (count == 2 * C + 1) {
                data[c] += x2[j];
                data[C + c] += x2[j] * x2[j];
              } else {
                const auto k = static_cast<size_t>(c);
                data[c] += w2[j];
                data[C + c] += w2[j] * (x2[j] - mean[k]) * inv_std[k];
              }
            }
        if (count == 2 * C + 1) {
          data[2 * C] += M;
          for (int c = 0; c < C; ++c) {
            const auto k = static_cast<size_t>(c);
            mean[k] = data[c] / data[2 * C];
            inv_std[k] = 1 / std::sqrt(data[C + c] / data[2 * C] - mean[k] * mean[k] + eps);
          }
        }
      });

      // N is the outermost axis, so the union batch [x; x2] is the two vectors one after the other.
      const auto join = [](const Vec& a, const Vec& b) {
        Vec u = a;
        u.insert(u.end(), b.begin(), b.end());
        return u;
      };
      Shape union_shape = cs.shape;
      union_shape[0] *= 2;
      const Extents du(union_shape);

      const Vec x = channel_input(d, 11), w = random_vec(x.size(), 12);
      const Tensor y = f.layer.forward(f.input(x, cs), Mode::train);
      const Vec y_union = train_reference(join(x, x2), du, f.gamma, f.beta);
      CHECK(rel_max_error(host_values(y),
                          Vec(y_union.begin(), y_union.begin() + static_cast<long>(x.size()))) < f32_tol);

      // dx: derivative of the loss of BOTH ranks, w.y + w2.y2, with x2 held fixed.
      const Tensor dx = f.layer.backward(f.input(w, cs));
      const auto of_x = [&](const Vec& v) { return train_reference(join(v, x2), du, f.gamma, f.beta); };
      CHECK(rel_max_error(host_values(dx), fd_gradient(of_x, x, join(w, w2))) < 1e-4);

      // dgamma, dbeta: this rank's share only, w.y (the gradient reducer adds the other rank's).
      const Vec zeros(x.size(), 0.0);
      const auto of_gamma = [&](const Vec& g) { return train_reference(join(x, x2), du, g, f.beta); };
      const auto of_beta = [&](const Vec& b) { return train_reference(join(x, x2), du, f.gamma, b); };
      CHECK(rel_max_error(f.dgamma(), fd_gradient(of_gamma, f.gamma, join(w, zeros))) < 1e-4);
      CHECK(rel_max_error(f.dbeta(), fd_gradient(of_beta, f.beta, join(w, zeros))) < 1e-4);
    }
  });
}

TEST_CASE("batch norm parameter gradients accumulate over backward calls and are announced ready") {
  for_each_device([](Device device) {
    const Shape shape{2, 16, 4, 4};
    const Extents d(shape);
    Fixture f(device, d.C, true);
    std::vector<ParameterRegistry::Id> ready;
    f.registry.set_grad_ready_hook([&](ParameterRegistry::Id id) { ready.push_back(id); });
    const Vec x = channel_input(d, 13), w = random_vec(x.size(), 14);
    for (int i = 0; i < 2; ++i) {
      f.layer.forward(tensor_on(device, x, shape, 16), Mode::train);
      f.layer.backward(tensor_on(device, w, shape, 16));
    }
    const auto of_gamma = [&](const Vec& g) { return train_reference(x, d, g, f.beta); };
    Vec twice = fd_gradient(of_gamma, f.gamma, w);
    for (auto& v : twice) v *= 2;
    CHECK(rel_max_error(f.dgamma(), twice) < 1e-4);
    const auto weight = param_id(f.registry, "bn.weight"), bias = param_id(f.registry, "bn.bias");
    CHECK(ready == std::vector<ParameterRegistry::Id>{bias, weight, bias, weight});
  });
}

TEST_CASE("batch norm rejects a wrong channel count and a single value per channel in train mode") {
  for_each_device([](Device device) {
    Fixture f(device, 16, true);
    CHECK_THROWS_AS(f.layer.forward(Tensor::zeros(Shape{2, 8, 4, 4}, DType::f32, device), Mode::train),
                    Error);
    CHECK_THROWS_WITH_AS(f.layer.forward(Tensor::zeros(Shape{1, 16, 1, 1}, DType::f32, device), Mode::train),
                         doctest::Contains("more than one value per channel"), Error);
    CHECK_NOTHROW(f.layer.forward(Tensor::zeros(Shape{1, 16, 1, 1}, DType::f32, device), Mode::eval));
  });
}

TEST_CASE("batch norm in fp16 and bf16 on the GPU and bf16 on the CPU matches fp32 within 16-bit rounding") {
  for_each_reduced_precision_backend([](Device device, const HalfType& type16) {
    for_each_norm_case([&](const NormCase& cs) {
      const Extents d(cs.shape);
      const Vec x = channel_input(d, 7), w = random_vec(x.size(), 8);
      Fixture cpu(Device::cpu, d.C, cs.affine), gpu(device, d.C, cs.affine);
      const Vec y32 = values_of(
          cpu.layer.forward(tensor_from(rounded_to(type16.dtype, x), cs.shape, cs.block), Mode::train));
      const Vec dx32 =
          values_of(cpu.layer.backward(tensor_from(rounded_to(type16.dtype, w), cs.shape, cs.block)));

      // The statistics, the normalisation and its gradient are fp32 / double on both backends over
      // the same rounded values: y and dx differ by their one rounding to the 16-bit type.
      const Tensor y = gpu.layer.forward(tensor_as(device, type16.dtype, x, cs.shape, cs.block), Mode::train);
      CHECK(y.device() == device);
      CHECK(y.dtype() == type16.dtype);
      CHECK(y.channel_block() == cs.block);
      CHECK(rel_max_error(values_as_f32(y), y32) < 2 * type16.u);
      // Running statistics come from the same double sums of the same values.
      CHECK(rel_max_error(values_of(gpu.layer.running_mean()), values_of(cpu.layer.running_mean())) < 1e-6);
      CHECK(rel_max_error(values_of(gpu.layer.running_var()), values_of(cpu.layer.running_var())) < 1e-6);
      const Tensor dx = gpu.layer.backward(tensor_as(device, type16.dtype, w, cs.shape, cs.block));
      CHECK(dx.device() == device);
      CHECK(dx.dtype() == type16.dtype);
      CHECK(dx.channel_block() == cs.block);
      CHECK(rel_max_error(values_as_f32(dx), dx32) < 2 * type16.u);
      // dgamma and dbeta are fp32 sums (in double) of the same values: no 16-bit rounding.
      if (cs.affine) {
        CHECK(rel_max_error(gpu.dgamma(), cpu.dgamma()) < f32_tol);
        CHECK(rel_max_error(gpu.dbeta(), cpu.dbeta()) < f32_tol);
      }
    });
  });
}

// L-BFGS with the vector-free two-loop recursion and optionally sharded history (see lbfgs.hpp).
#include "optim/lbfgs.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "optim/grad_clip.hpp"
#include "optim/line_search.hpp"

namespace pdegen {

namespace {

// Fixed chunks summed in a fixed order: the same bits for any number of threads.
constexpr int64_t dot_chunk = 1 << 14;

// out[j] = sum_i a[i] * b[j][i] over [0, n), in double.
void dots(const float* a, const std::vector<const float*>& b, int64_t n, double* out) {
  const int64_t chunks = (n + dot_chunk - 1) / dot_chunk;
  const size_t k = b.size();
  std::vector<double> partial(static_cast<size_t>(chunks) * k);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = c * dot_chunk, end = std::min(n, begin + dot_chunk);
    for (size_t j = 0; j < k; ++j) {
      const float* bj = b[j];
      double sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t i = begin; i < end; ++i) sum += static_cast<double>(a[i]) * bj[i];
      partial[static_cast<size_t>(c) * k + j] = sum;
    }
  }
  for (size_t j = 0; j < k; ++j) out[j] = 0;
  for (int64_t c = 0; c < chunks; ++c)
    for (size_t j = 0; j < k; ++j) out[j] += partial[static_cast<size_t>(c) * k + j];
}

double dot(const float* a, const float* b, int64_t n) {
  double out = 0;
  dots(a, {b}, n, &out);
  return out;
}

double max_abs(const float* a, int64_t n) {
  float m = 0;
#pragma omp parallel for simd schedule(static) reduction(max : m)
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::abs(a[i]));
  return m;
}

double sum_abs(const float* a, int64_t n) {
  const int64_t chunks = (n + dot_chunk - 1) / dot_chunk;
  std::vector<double> partial(static_cast<size_t>(chunks));
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    double sum = 0;
    const int64_t end = std::min(n, (c + 1) * dot_chunk);
#pragma omp simd reduction(+ : sum)
    for (int64_t i = c * dot_chunk; i < end; ++i) sum += std::abs(static_cast<double>(a[i]));
    partial[static_cast<size_t>(c)] = sum;
  }
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

bool allocated(const Tensor& t, int64_t numel) { return t.raw() != nullptr && t.numel() == numel; }

// x = x0 + t d, in fp32 as torch.optim.LBFGS does.
void set_point(float* x, const float* x0, const float* d, double t, int64_t n) {
  const float step = static_cast<float>(t);
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) x[i] = x0[i] + step * d[i];
}

}  // namespace

Lbfgs::Lbfgs(const OptimizerSettings& settings, const ParameterRegistry& params, const Communicator* comm)
    : settings_(settings.lbfgs),
      sharded_(settings.lbfgs.shard_history),
      n_(params.flat_values().numel()),
      m_(settings.lbfgs.history) {
  PDEGEN_CHECK(m_ >= 1, "lbfgs history {}", m_);
  if (sharded_) {
    PDEGEN_CHECK(comm, "lbfgs.shard_history needs the communicator");
    comm_ = std::make_unique<Communicator>(*comm);
    share_ = share_of(n_, comm_->rank(), comm_->size());
  } else {
    share_ = {0, n_};
  }
  const int64_t len = share_.count();
  s_ = Tensor::zeros(Shape{m_ * len});
  y_ = Tensor::zeros(Shape{m_ * len});
  prev_grad_ = Tensor::zeros(Shape{len});
  direction_ = Tensor::zeros(Shape{n_});
  gram_.assign(static_cast<size_t>(4 * m_ * m_), 0.0);
}

int64_t Lbfgs::stored_floats() const { return s_.numel() + y_.numel(); }

void Lbfgs::step(ParameterRegistry&, double) {
  PDEGEN_THROW("lbfgs evaluates the loss in its line search: call step() with the loss closure");
}

void Lbfgs::global_sum(std::vector<double>& values) const {
  if (!sharded_ || comm_->size() == 1) return;
  comm_->allreduce_sum(values.data(), static_cast<int64_t>(values.size()));
  // MPI may reduce in a different order on different ranks; rank 0's bits are everyone's.
  comm_->broadcast(values.data(), static_cast<int64_t>(values.size() * sizeof(double)), 0);
}

void Lbfgs::update_history_and_direction(const float* g) {
  const int64_t len = share_.count();
  const int k = count_;
  const float* gs = g + share_.begin;
  // The candidate pair on this rank's share.
  Tensor pair_s = Tensor::empty(Shape{len}), pair_y = Tensor::empty(Shape{len});
  float* sn = pair_s.data<float>();
  float* yn = pair_y.data<float>();
  const float* d = direction_.data<float>() + share_.begin;
  const float* prev = prev_grad_.data<float>();
  const float t = static_cast<float>(step_length_);
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < len; ++i) {
    sn[i] = t * d[i];
    yn[i] = gs[i] - prev[i];
  }

  // Every dot product this iteration needs, in one global sum:
  //   s.{s_j, y_j, s, y, g} (2k + 3), y.{s_j, y_j, y, g} (2k + 2), g.{s_j, y_j, g} (2k + 1).
  std::vector<const float*> history;
  for (int j = 0; j < k; ++j) history.push_back(s_.data<float>() + j * len);
  for (int j = 0; j < k; ++j) history.push_back(y_.data<float>() + j * len);
  const size_t h = history.size();
  std::vector<double> sums(3 * h + 6);
  double* s_dots = sums.data();
  double* y_dots = s_dots + h + 3;
  double* g_dots = y_dots + h + 2;
  auto with = [&](std::initializer_list<const float*> extra) {
    std::vector<const float*> v = history;
    v.insert(v.end(), extra);
    return v;
  };
  dots(sn, with({sn, yn, gs}), len, s_dots);
  dots(yn, with({yn, gs}), len, y_dots);
  dots(gs, with({gs}), len, g_dots);
  global_sum(sums);
  double ss = s_dots[h], sy = s_dots[h + 1], sg = s_dots[h + 2];
  double yy = y_dots[h], yg = y_dots[h + 1];
  const double gg = g_dots[h];

  if (settings_.damping && ss > 0) {
    // Powell: with B0 = I / H_diag, y <- theta y + (1 - theta) B0 s when s.y < 0.2 s.B0.s.
    const double sbs = ss / h_diag_;
    if (sy < 0.2 * sbs) {
      const double theta = 0.8 * sbs / (sbs - sy), phi = (1 - theta) / h_diag_;
      const float theta_f = static_cast<float>(theta), phi_f = static_cast<float>(phi);
#pragma omp parallel for simd schedule(static)
      for (int64_t i = 0; i < len; ++i) yn[i] = theta_f * yn[i] + phi_f * sn[i];
      for (size_t j = 0; j < h; ++j) y_dots[j] = theta * y_dots[j] + phi * s_dots[j];
      yy = theta * theta * yy + 2 * theta * phi * sy + phi * phi * ss;
      yg = theta * yg + phi * sg;
      sy = theta * sy + phi * ss;
    }
  }

  // The g row of the basis after the update: g.s_j, g.y_j of the pairs kept.
  std::vector<double> g_row_s(g_dots, g_dots + k), g_row_y(g_dots + k, g_dots + 2 * k);
  // No step was taken (ss = 0): there is no pair to test.
  const bool accept = std::isfinite(sy) && std::isfinite(yy) && sy > 0 && sy > settings_.curvature_eps * yy;
  if (!accept) {
    if (ss > 0) ++skipped_;
  } else {
    const int m = m_;
    auto G = [&](int a, int b) -> double& { return gram_[static_cast<size_t>(a * 2 * m + b)]; };
    int first = 0;  // oldest pair kept
    if (k == m) {
      // Full: drop the oldest pair (vectors, Gram rows and columns, dots with it).
      first = 1;
      std::memmove(s_.data<float>(), s_.data<float>() + len,
                   static_cast<size_t>((m - 1) * len) * sizeof(float));
      std::memmove(y_.data<float>(), y_.data<float>() + len,
                   static_cast<size_t>((m - 1) * len) * sizeof(float));
      std::vector<double> old = gram_;
      auto old_at = [&](int a, int b) { return old[static_cast<size_t>(a * 2 * m + b)]; };
      for (int a = 0; a < 2 * m; ++a)
        for (int b = 0; b < 2 * m; ++b) {
          const int ga = a < m ? a : a - m, gb = b < m ? b : b - m;
          if (ga == m - 1 || gb == m - 1) {
            G(a, b) = 0;
            continue;
          }
          G(a, b) = old_at(a + 1, b + 1);  // position p of either group was p + 1 before
        }
      g_row_s.erase(g_row_s.begin());
      g_row_y.erase(g_row_y.begin());
    }
    const int slot = k - first;  // where the new pair goes
    std::memcpy(s_.data<float>() + slot * len, sn, static_cast<size_t>(len) * sizeof(float));
    std::memcpy(y_.data<float>() + slot * len, yn, static_cast<size_t>(len) * sizeof(float));
    for (int j = first; j < k; ++j) {
      const int kept = j - first;
      G(slot, kept) = G(kept, slot) = s_dots[j];                      // s.s_j
      G(slot, m + kept) = G(m + kept, slot) = s_dots[k + j];          // s.y_j
      G(m + slot, kept) = G(kept, m + slot) = y_dots[j];              // y.s_j
      G(m + slot, m + kept) = G(m + kept, m + slot) = y_dots[k + j];  // y.y_j
    }
    G(slot, slot) = ss;
    G(slot, m + slot) = G(m + slot, slot) = sy;
    G(m + slot, m + slot) = yy;
    g_row_s.push_back(sg);
    g_row_y.push_back(yg);
    count_ = slot + 1;
    h_diag_ = sy / yy;
  }
  std::vector<double> g_basis = g_row_s;
  g_basis.insert(g_basis.end(), g_row_y.begin(), g_row_y.end());
  g_basis.push_back(gg);
  form_direction(g, g_basis);
}

void Lbfgs::form_direction(const float* g, const std::vector<double>& g_dots) {
  const int k = count_, m = m_, size = 2 * k + 1;
  // Gram matrix of the basis b = (s_0..s_{k-1}, y_0..y_{k-1}, g).
  std::vector<double> B(static_cast<size_t>(size * size));
  auto at = [&](int a, int b) -> double& { return B[static_cast<size_t>(a * size + b)]; };
  auto full = [&](int a) { return a < k ? a : m + (a - k); };
  for (int a = 0; a < 2 * k; ++a)
    for (int b = 0; b < 2 * k; ++b) at(a, b) = gram_[static_cast<size_t>(full(a) * 2 * m + full(b))];
  for (int a = 0; a < size; ++a) at(a, 2 * k) = at(2 * k, a) = g_dots[static_cast<size_t>(a)];
  auto dot_with = [&](int a, const std::vector<double>& coef) {
    double sum = 0;
    for (int j = 0; j < size; ++j) sum += at(a, j) * coef[static_cast<size_t>(j)];
    return sum;
  };

  // Two-loop recursion (torch.optim.LBFGS's order) on coefficients over the basis.
  std::vector<double> q(static_cast<size_t>(size), 0.0), alpha(static_cast<size_t>(k));
  q[static_cast<size_t>(2 * k)] = -1;
  for (int i = k - 1; i >= 0; --i) {
    const double ro = 1 / at(i, k + i);
    alpha[static_cast<size_t>(i)] = ro * dot_with(i, q);
    q[static_cast<size_t>(k + i)] -= alpha[static_cast<size_t>(i)];
  }
  for (double& c : q) c *= h_diag_;
  for (int i = 0; i < k; ++i) {
    const double ro = 1 / at(i, k + i);
    const double beta = ro * dot_with(k + i, q);
    q[static_cast<size_t>(i)] += alpha[static_cast<size_t>(i)] - beta;
  }

  // This rank's share of d = sum_j q_j b_j, then everyone's.
  const int64_t len = share_.count();
  std::vector<const float*> basis;
  for (int j = 0; j < k; ++j) basis.push_back(s_.data<float>() + j * len);
  for (int j = 0; j < k; ++j) basis.push_back(y_.data<float>() + j * len);
  basis.push_back(g + share_.begin);
  float* d = direction_.data<float>() + share_.begin;
  const double* coef = q.data();
  const int64_t chunks = (len + dot_chunk - 1) / dot_chunk;
#pragma omp parallel
  {
    std::vector<double> acc(static_cast<size_t>(dot_chunk));
#pragma omp for schedule(static)
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t begin = c * dot_chunk, count = std::min(len, begin + dot_chunk) - begin;
      double* a = acc.data();
      std::fill(a, a + count, 0.0);
      for (int j = 0; j < size; ++j) {
        const float* b = basis[static_cast<size_t>(j)] + begin;
        const double cj = coef[j];
#pragma omp simd
        for (int64_t i = 0; i < count; ++i) a[i] += cj * b[i];
      }
#pragma omp simd
      for (int64_t i = 0; i < count; ++i) d[begin + i] = static_cast<float>(a[i]);
    }
  }
  if (sharded_ && comm_->size() > 1) comm_->allgather(direction_.data<float>(), n_);
}

StepResult Lbfgs::step(ParameterRegistry& params, double lr, const LossClosure& closure, double grad_clip) {
  PDEGEN_CHECK(grad_clip == 0,
               "lbfgs with gradient clipping ({}): clipping would change what the line search "
               "measures",
               grad_clip);
  PDEGEN_CHECK(params.flat_values().numel() == n_,
               "lbfgs was made for {} parameter values, the registry has {}", n_,
               params.flat_values().numel());
  release_export();
  StepResult result;
  const Evaluation first = closure();
  double loss = first.loss;
  result.loss = loss;
  result.evaluations = 1;
  if (!first.finite()) {
    result.grad_norm = NAN;
    return result;
  }
  result.updated = true;
  const Tensor& values = params.flat_values();
  const Tensor& grads = params.flat_grads();
  auto grad = std::make_shared<const Tensor>(grads.clone());
  result.grad_norm = global_norm(*grad);
  float* x = values.data<float>();
  if (start_values_.numel() != n_) start_values_ = Tensor::empty(Shape{n_});
  float* x0 = start_values_.data<float>();
  const float* d = direction_.data<float>();

  auto phi = [&](double t) {
    set_point(x, x0, d, t, n_);
    LinePoint p;
    p.t = t;
    const Evaluation e = closure();
    // The line search compares values: an unusable point is one it must reject.
    p.f = e.finite() ? e.loss : std::numeric_limits<double>::infinity();
    auto g = std::make_shared<const Tensor>(grads.clone());
    p.gtd = dot(g->data<float>(), d, n_);
    p.grad = std::move(g);
    ++result.evaluations;
    return p;
  };

  if (max_abs(grad->data<float>(), n_) > settings_.tolerance_grad) {
    for (int iteration = 1;; ++iteration) {
      ++iterations_;
      const float* g = grad->data<float>();
      if (iterations_ == 1) {
        h_diag_ = 1;
        form_direction(g, {0.0});  // no pairs yet: d = -g (g.g is not needed)
      } else {
        update_history_and_direction(g);
      }
      std::memcpy(prev_grad_.data<float>(), g + share_.begin,
                  static_cast<size_t>(share_.count()) * sizeof(float));
      prev_loss_ = loss;

      double t = iterations_ == 1 ? std::min(1.0, 1.0 / sum_abs(g, n_)) * lr : lr;
      const double gtd = dot(g, d, n_);
      if (!(gtd < -settings_.tolerance_change)) {
        step_length_ = 0;  // no step taken: the next pair is empty and skipped
        break;
      }
      std::memcpy(x0, x, static_cast<size_t>(n_) * sizeof(float));
      const LinePoint start{0, loss, gtd, grad};
      const double d_max = max_abs(d, n_);
      const int budget = std::max(1, std::min(25, settings_.max_evaluations - result.evaluations));
      const LineSearchResult found =
          settings_.line_search == LineSearch::strong_wolfe
              ? strong_wolfe_search(phi, start, t, d_max, settings_.tolerance_change, budget)
              : backtracking_search(phi, start, t, d_max, settings_.tolerance_change, budget);
      t = found.point.t;
      step_length_ = t;
      set_point(x, x0, d, t, n_);
      loss = found.point.f;
      grad = found.point.grad;

      if (iteration >= settings_.max_iterations || result.evaluations >= settings_.max_evaluations) break;
      if (max_abs(grad->data<float>(), n_) <= settings_.tolerance_grad) break;
      if (d_max * std::abs(t) <= settings_.tolerance_change) break;
      if (std::abs(loss - prev_loss_) < settings_.tolerance_change) break;
    }
  }
  // The registry holds the gradient at the final point, as after a plain evaluation there.
  std::memcpy(grads.raw(), grad->raw(), grads.nbytes());
  ++step_count_;
  return result;
}

std::vector<std::pair<std::string, Tensor*>> Lbfgs::state() {
  if (!allocated(export_gram_, 4 * m_ * m_)) {
    export_gram_ = Tensor::zeros(Shape{4 * m_ * m_}, DType::f64);
    export_scalars_ = Tensor::zeros(Shape{6}, DType::f64);
  }
  if (!sharded_)
    return {{"lbfgs_s", &s_},
            {"lbfgs_y", &y_},
            {"lbfgs_direction", &direction_},
            {"lbfgs_prev_grad", &prev_grad_},
            {"lbfgs_gram", &export_gram_},
            {"lbfgs_scalars", &export_scalars_}};
  if (!allocated(export_s_, m_ * n_)) {
    export_s_ = Tensor::zeros(Shape{m_ * n_});
    export_y_ = Tensor::zeros(Shape{m_ * n_});
    export_prev_grad_ = Tensor::zeros(Shape{n_});
  }
  return {{"lbfgs_s", &export_s_},          {"lbfgs_y", &export_y_},
          {"lbfgs_direction", &direction_}, {"lbfgs_prev_grad", &export_prev_grad_},
          {"lbfgs_gram", &export_gram_},    {"lbfgs_scalars", &export_scalars_}};
}

void Lbfgs::gather_state() {
  state();  // allocates the export tensors
  std::memcpy(export_gram_.data<double>(), gram_.data(), gram_.size() * sizeof(double));
  double* scalars = export_scalars_.data<double>();
  scalars[0] = count_;
  scalars[1] = step_length_;
  scalars[2] = h_diag_;
  scalars[3] = prev_loss_;
  scalars[4] = static_cast<double>(iterations_);
  scalars[5] = static_cast<double>(skipped_);
  if (!sharded_) return;
  const int64_t len = share_.count();
  auto gather = [&](const float* share, float* full) {
    std::memcpy(full + share_.begin, share, static_cast<size_t>(len) * sizeof(float));
    comm_->allgather(full, n_);
  };
  for (int j = 0; j < m_; ++j) {
    gather(s_.data<float>() + j * len, export_s_.data<float>() + j * n_);
    gather(y_.data<float>() + j * len, export_y_.data<float>() + j * n_);
  }
  gather(prev_grad_.data<float>(), export_prev_grad_.data<float>());
}

void Lbfgs::scatter_state() {
  state();
  const double* scalars = export_scalars_.data<double>();
  PDEGEN_CHECK(scalars[0] >= 0 && scalars[0] <= m_ && scalars[0] == std::floor(scalars[0]),
               "lbfgs state holds {} pairs, the history has room for {}", scalars[0], m_);
  count_ = static_cast<int>(scalars[0]);
  step_length_ = scalars[1];
  h_diag_ = scalars[2];
  prev_loss_ = scalars[3];
  iterations_ = static_cast<int64_t>(scalars[4]);
  skipped_ = static_cast<int64_t>(scalars[5]);
  std::memcpy(gram_.data(), export_gram_.data<double>(), gram_.size() * sizeof(double));
  if (!sharded_) return;
  const int64_t len = share_.count();
  for (int j = 0; j < m_; ++j) {
    std::memcpy(s_.data<float>() + j * len, export_s_.data<float>() + j * n_ + share_.begin,
                static_cast<size_t>(len) * sizeof(float));
    std::memcpy(y_.data<float>() + j * len, export_y_.data<float>() + j * n_ + share_.begin,
                static_cast<size_t>(len) * sizeof(float));
  }
  std::memcpy(prev_grad_.data<float>(), export_prev_grad_.data<float>() + share_.begin,
              static_cast<size_t>(len) * sizeof(float));
  release_export();
}

void Lbfgs::release_export() {
  if (!sharded_) return;
  export_s_ = Tensor();
  export_y_ = Tensor();
  export_prev_grad_ = Tensor();
}

std::unique_ptr<Optimizer> make_lbfgs(const OptimizerSettings& settings, const ParameterRegistry& params,
                                      const Communicator* comm) {
  return std::make_unique<Lbfgs>(settings, params, comm);
}

}  // namespace pdegen

// Losses between a prediction and its target, per sample over the grid's nodes, summed over the
// samples (the Objective convention): mse = mean (u - t)^2; l1 = mean |u - t|; huber = mean of
// (u - t)^2 / 2 within `delta` of the target, delta (|u - t| - delta / 2) beyond; rel_l2 =
// ||u - t|| / ||t||, the error the evaluation reports. Sums in double, in a fixed order.
#pragma once

#include <cstdint>
#include <vector>

#include "config/choices.hpp"

namespace pdegen::data {

struct DataLoss {
  DataLossKind kind = DataLossKind::mse;
  double huber_delta = 1.0;
};

// The sum over `samples` samples of `values` nodes each; with `du`, du = grad_scale * d(sum)/du
// (the subgradient 0 where |u - t| = 0 for l1); with `per_sample`, each sample's loss.
double data_loss(const DataLoss& loss, const float* u, const float* target, int64_t samples, int64_t values,
                 double grad_scale, float* du, std::vector<double>* per_sample = nullptr);

}  // namespace pdegen::data

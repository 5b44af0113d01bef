// The memory estimate of `pdegen check`: what one process holds, and over how many ranks a batch
// must be split to fit.
#include "app/memory_estimate.hpp"
#include "testing.hpp"

using namespace pdegen;
using namespace pdegen::app;

TEST_CASE("the estimate is the plan's activations per pass plus fp32 values, gradients and optimizer state") {
  Deck deck;
  deck.problem.resolution = 64;
  deck.training.batch_size = 16;
  deck.training.micro_batches = 4;
  NetworkPlan plan;
  plan.global_batch = 16;
  plan.peak_activation_bytes = 1600;
  plan.parameters = 10;
  const MemoryEstimate adam = estimate_memory(deck, plan);
  CHECK(adam.per_sample == 100);
  CHECK(adam.samples == 4);
  CHECK(adam.state == 4.0 * 10 * 4);        // values, gradients, two moments
  CHECK(adam.sampler == 8.0 * 4 * 64 * 2);  // kl_modes x resolution x axes, double
  deck.optimizer.type = OptimizerKind::lbfgs;
  CHECK(estimate_memory(deck, plan).state == 4.0 * 10 * (2 + 2 * 10 + 3));  // history 10
}

TEST_CASE("ranks to fit: the fewest ranks whose share of the batch fits, 0 when one sample does not") {
  MemoryEstimate e;
  e.per_sample = 100;
  e.samples = 16;
  e.state = 50;
  CHECK(ranks_to_fit(e, 2000) == 1);  // 16 x 100 + 50 fits
  CHECK(ranks_to_fit(e, 1000) == 2);  // 9 samples fit, 8 per rank at 2 ranks
  CHECK(ranks_to_fit(e, 460) == 4);   // 4 fit
  CHECK(ranks_to_fit(e, 360) == 6);   // 3 fit: ceil(16 / 3)
  CHECK(ranks_to_fit(e, 150) == 16);  // 1 sample per rank
  CHECK(ranks_to_fit(e, 149) == 0);   // not even one
}

TEST_CASE("the machine's memory is known and positive") { CHECK(machine_memory_bytes() > 0); }

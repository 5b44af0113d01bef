// One reader per deck section: each starts from the struct's defaults, asks its Section for every
// key (so unknown keys can be told apart) and checks what spans several keys of its section.
#pragma once

#include "config/deck.hpp"
#include "config/reader.hpp"

namespace pdegen::config {

ProblemConfig read_problem(Section& s);
NetworkConfig read_network(Section& s);
OptimizerConfig read_optimizer(Section& s);  // includes optimizer.schedule
TrainingConfig read_training(Section& s);
ParallelConfig read_parallel(Section& s);
EvaluationConfig read_evaluation(Section& s);
// `samples_ok`: evaluation.samples was valid (field_samples is compared with it).
OutputConfig read_output(Section& s, const EvaluationConfig& evaluation, bool samples_ok);
TimelineConfig read_timeline(Section& s);
CudaConfig read_cuda(Section& s);
// `precision` sets the default of `enabled` (on for fp16).
LossScalingConfig read_loss_scaling(Section& s, DType precision);

}  // namespace pdegen::config

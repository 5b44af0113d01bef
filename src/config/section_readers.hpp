// One reader per deck section: each starts from `c` (the struct's defaults when reading a deck, a
// Deck's values when describing one for to_yaml), asks its Section for every key (so unknown keys can
// be told apart, and each key is recorded with its documentation) and checks what spans several
// keys of its section.
#pragma once

#include "config/deck.hpp"
#include "config/reader.hpp"

namespace pdegen::config {

ProblemConfig read_problem(Section& s, ProblemConfig c);
NetworkConfig read_network(Section& s, NetworkConfig c);
OptimizerConfig read_optimizer(Section& s, OptimizerConfig c);  // includes optimizer.schedule
TrainingConfig read_training(Section& s, TrainingConfig c);
DataConfig read_data(Section& s, DataConfig c, const TrainingConfig& training);
// After the problem, training and optimizer sections of `d`, whose values are the levels' defaults.
MultigridConfig read_multigrid(Section& s, MultigridConfig c, const Deck& d);
ParallelConfig read_parallel(Section& s, ParallelConfig c);
EvaluationConfig read_evaluation(Section& s, EvaluationConfig c);
// `samples_ok`: evaluation.samples was valid (field_samples is compared with it).
OutputConfig read_output(Section& s, OutputConfig c, const EvaluationConfig& evaluation, bool samples_ok);
TimelineConfig read_timeline(Section& s, TimelineConfig c);
CudaConfig read_cuda(Section& s, CudaConfig c);
CpuConfig read_cpu(Section& s, CpuConfig c);
LossScalingConfig read_loss_scaling(Section& s, LossScalingConfig c);

// Every section and top-level key of `top` into `d`, whose members are the fallbacks. The order of
// the reads is the order of the resolved deck.
void read_deck(Section& top, Deck& d);

}  // namespace pdegen::config

// The run sections: training, parallel, evaluation, output, timeline, cuda (no types, no gates).
#include "config/section_readers.hpp"

namespace pdegen::config {

TrainingConfig read_training(Section& s) {
  TrainingConfig c;
  c.steps = s.integer("steps", c.steps, at_least(0));
  c.batch_size = s.integer("batch_size", c.batch_size, at_least(1));
  c.seed = static_cast<uint64_t>(s.integer("seed", static_cast<int64_t>(c.seed), at_least(0)));
  c.micro_batches = s.integer_as<int>("micro_batches", c.micro_batches, at_least(1));
  if (s.ok("batch_size") && s.ok("micro_batches") && c.micro_batches > c.batch_size)
    s.fail("micro_batches",
           fmt::format("'training.micro_batches' ({}) must not exceed training.batch_size ({})",
                       c.micro_batches, c.batch_size));
  c.log_every = s.integer("log_every", c.log_every, at_least(1));
  c.checkpoint_every = s.integer("checkpoint_every", c.checkpoint_every, at_least(0));
  c.restart = s.string("restart", c.restart);
  return c;
}

ParallelConfig read_parallel(Section& s) {
  ParallelConfig c;
  c.bucket_mb = s.number("bucket_mb", c.bucket_mb, above(0));
  c.first_bucket_mb = s.number("first_bucket_mb", c.first_bucket_mb, above(0));
  c.overlap = s.boolean("overlap", c.overlap);
  c.hierarchical = s.choice<Hierarchical>("hierarchical", c.hierarchical);
  c.compression = s.choice<Compression>("compression", c.compression);
  c.sync_batchnorm = s.choice<SyncBatchNorm>("sync_batchnorm", c.sync_batchnorm);
  c.consistency_every = s.integer("consistency_every", c.consistency_every, at_least(0));
  return c;
}

EvaluationConfig read_evaluation(Section& s) {
  EvaluationConfig c;
  c.every = s.integer("every", c.every, at_least(0));
  c.samples = s.integer_as<int>("samples", c.samples, at_least(1));
  c.solver_tolerance = s.number("solver_tolerance", c.solver_tolerance, Range{0, 1, true, true});
  return c;
}

OutputConfig read_output(Section& s, const EvaluationConfig& evaluation, bool samples_ok) {
  OutputConfig c;
  c.dir = s.string("dir", c.dir);
  c.fields = s.boolean("fields", c.fields);
  c.field_samples = s.integer_as<int>("field_samples", c.field_samples, at_least(0));
  if (c.fields && samples_ok && s.ok("field_samples") && c.field_samples > evaluation.samples)
    s.fail(
        "field_samples",
        fmt::format("'output.field_samples' ({}) must not exceed evaluation.samples ({}): fields are written "
                    "for evaluation samples",
                    c.field_samples, evaluation.samples));
  c.checkpoint_keep = s.integer_as<int>("checkpoint_keep", c.checkpoint_keep, at_least(1));
  return c;
}

CudaConfig read_cuda(Section& s) {
  CudaConfig c;
  c.conv_math = s.choice<ConvMathKind>("conv_math", c.conv_math);
  c.workspace_mb = s.number("workspace_mb", c.workspace_mb, at_least(0));
  c.algo_search = s.boolean("algo_search", c.algo_search);
  return c;
}

LossScalingConfig read_loss_scaling(Section& s, DType precision) {
  LossScalingConfig c;
  c.enabled = s.boolean("enabled", precision == DType::f16);
  c.initial_scale = s.number("initial_scale", c.initial_scale, above(0));
  c.growth_factor = s.number("growth_factor", c.growth_factor, above(1));
  c.backoff_factor = s.number("backoff_factor", c.backoff_factor, Range{0, 1, true, true});
  c.growth_interval = s.integer("growth_interval", c.growth_interval, at_least(1));
  c.min_scale = s.number("min_scale", c.min_scale, above(0));
  c.max_scale = s.number("max_scale", c.max_scale, above(0));
  if (s.ok("min_scale") && s.ok("max_scale") && c.min_scale > c.max_scale)
    s.fail("min_scale", fmt::format("'loss_scaling.min_scale' ({}) must not exceed max_scale ({})",
                                    c.min_scale, c.max_scale));
  else if (s.ok("initial_scale") && s.ok("min_scale") && s.ok("max_scale") &&
           !(c.min_scale <= c.initial_scale && c.initial_scale <= c.max_scale))
    s.fail("initial_scale",
           fmt::format("'loss_scaling.initial_scale' ({}) must lie in [min_scale, max_scale] = [{}, {}]",
                       c.initial_scale, c.min_scale, c.max_scale));
  return c;
}

TimelineConfig read_timeline(Section& s) {
  TimelineConfig c;
  c.enabled = s.boolean("enabled", c.enabled);
  c.first_step = s.integer("first_step", c.first_step, at_least(1));
  c.steps = s.integer("steps", c.steps, at_least(1));
  return c;
}

}  // namespace pdegen::config

// The run sections: training, data, parallel, evaluation, output, timeline, cuda, cpu (no types, no gates).
#include "config/section_readers.hpp"

namespace pdegen::config {

TrainingConfig read_training(Section& s, TrainingConfig c) {
  c.steps = s.integer("steps", c.steps, at_least(0), "optimizer steps");
  c.batch_size = s.integer("batch_size", c.batch_size, at_least(1),
                           "the **global** batch, over all ranks (each rank takes its share; the loss is the "
                           "same on any rank count)");
  c.seed = static_cast<uint64_t>(
      s.integer("seed", static_cast<int64_t>(c.seed), at_least(0),
                "seeds parameters and samples: the same deck gives the same run on 1 or 1000 ranks"));
  c.micro_batches = s.integer_as<int>(
      "micro_batches", c.micro_batches, at_least(1),
      Doc("gradient accumulation: each step in this many passes (less memory)").allowed("<= `batch_size`"));
  if (s.ok("batch_size") && s.ok("micro_batches") && c.micro_batches > c.batch_size)
    s.fail("micro_batches",
           fmt::format("'training.micro_batches' ({}) must not exceed training.batch_size ({})",
                       c.micro_batches, c.batch_size));
  c.log_every =
      s.integer("log_every", c.log_every, at_least(1), "steps between progress lines and history rows");
  c.checkpoint_every = s.integer("checkpoint_every", c.checkpoint_every, at_least(0),
                                 "steps between checkpoints; 0 = only the final one");
  c.restart = s.string("restart", c.restart,
                       Doc("start from scratch, from the newest checkpoint in `output.dir`, or from this "
                           "checkpoint file")
                           .allowed("`none`, `latest`, a path"));
  c.allow_deck_changes = s.boolean(
      "allow_deck_changes", c.allow_deck_changes,
      "restart from a checkpoint whose deck differs in keys that change the training (optimizer, problem, "
      "network, batch, seed, ...; each change is logged); `false` = refuse, naming the first such key. "
      "Steps, logging, checkpointing, evaluation, output, parallel and device keys may always change");
  c.fp32_after_step = s.integer(
      "fp32_after_step", c.fp32_after_step, at_least(0),
      "with `precision` bf16 or fp16, the steps after this one (and their evaluations) run in fp32: 16-bit "
      "training stalls at an error floor (about 0.27% mean rel_l2 at 64^2 in bf16) that an fp32 finish "
      "removes; 0 = all steps in `precision`");
  c.objective = s.choice<ObjectiveKind>(
      "objective", c.objective,
      "what training minimises: `physics` = the problem's FEM loss of the lifted output (no data); `data` = "
      "the `data.loss` between the lifted output and the dataset's target; `hybrid` = physics + "
      "`data.weight` "
      "x data");
  return c;
}

DataConfig read_data(Section& s, DataConfig c, const TrainingConfig& training) {
  if (training.objective == ObjectiveKind::physics && !s.describing())
    s.fail("files", "the data section applies only with training.objective data or hybrid (it is physics)");
  c.files =
      s.string("files", c.files,
               Doc("the dataset's HDF5 files (`pdegen dataset` writes them): a path or a glob, relative "
                   "to the working directory, read in sorted order")
                   .allowed("required: a path or a glob"));
  if (c.files.empty() && s.ok("files") && !s.describing())
    s.fail("files", "'data.files' is required: a path or a glob of HDF5 files");
  c.input =
      s.string("input", c.input,
               Doc("dataset of the network inputs, [N, grid...] or [N, 1, grid...]; a bare name is looked "
                   "up under `/fields`")
                   .allowed("`auto`: `log_nu` (the inverse map: `u_ref`)"));
  c.target = s.string("target", c.target,
                      Doc("dataset of the targets the lifted network output is compared with; a bare name is "
                          "looked up under `/fields`")
                          .allowed("`auto`: `u_ref` (the inverse map: `log_nu`)"));
  c.validation_fraction = s.number("validation_fraction", c.validation_fraction, half_open(0, 1),
                                   "the last records (in file order), held out of training; the evaluation "
                                   "reports their mean data loss (`val_loss`)");
  c.loss =
      s.choice<DataLossKind>("loss", c.loss,
                             "per sample: `mse` mean squared error, `l1` mean absolute error, `huber` "
                             "(quadratic within `huber_delta`, linear beyond), `rel_l2` ||u - t|| / ||t||");
  c.huber_delta = s.number("huber_delta", c.huber_delta, above(0), "huber: where quadratic turns linear");
  c.weight = s.number("weight", c.weight, at_least(0), "hybrid: loss = physics + weight x data");
  c.shuffle =
      s.boolean("shuffle", c.shuffle,
                "visit the records in a new seeded order each epoch, the same on every rank; `false` = "
                "file order");
  c.prefetch =
      s.integer_as<int>("prefetch", c.prefetch, Range{0, 64},
                        "micro-batches a reader thread reads ahead while the network computes; 0 = read "
                        "when needed");
  return c;
}

ParallelConfig read_parallel(Section& s, ParallelConfig c) {
  c.bucket_mb =
      s.number("bucket_mb", c.bucket_mb, above(0),
               "gradient bucket size, MiB of fp32 gradients; a parameter is never split, so a larger "
               "one gets a bucket of its own");
  c.first_bucket_mb =
      s.number("first_bucket_mb", c.first_bucket_mb, above(0),
               "size of the first bucket (the last layers' gradients: small, so communication "
               "starts early in backward)");
  c.overlap = s.boolean("overlap", c.overlap,
                        "reduce buckets from a communication thread while backward goes on; `false` = the "
                        "blocking baseline (all buckets after backward)");
  c.hierarchical = s.choice<Hierarchical>(
      "hierarchical", c.hierarchical,
      "reduce-scatter inside each node, allreduce across nodes, allgather inside the node; `auto` = on when "
      "the job spans several nodes with the same number of ranks each. Nodes are found with "
      "MPI_Comm_split_type; `PDEGEN_SIMULATED_NODE_SIZE=k` in the environment imposes blocks of k ranks "
      "instead (to test multi-node layouts on one machine)");
  c.compression = s.choice<Compression>(
      "compression", c.compression,
      "16-bit gradients on the wire (half the bytes), summed in fp32, the sum rounded once; the same result "
      "on every rank. `fp16` can overflow for gradients above 65504: prefer `bf16` unless gradients are "
      "known to be small");
  c.sync_batchnorm = s.choice<SyncBatchNorm>(
      "sync_batchnorm", c.sync_batchnorm,
      "batch-norm statistics over the whole (micro-)batch on all ranks, so P ranks train like one; `auto` = "
      "on when ranks > 1. Needs at least one sample per rank in every micro-batch");
  c.consistency_every = s.integer(
      "consistency_every", c.consistency_every, at_least(0),
      "steps between checks that all ranks hold bit-identical parameters and optimizer state (a 64-bit "
      "checksum, one small allreduce); a mismatch stops the run with an error; 0 = never");
  c.collective_timeout = s.number(
      "collective_timeout", c.collective_timeout, at_least(0),
      Doc("seconds a rank may wait in one collective operation (a sum over ranks, a checkpoint, a parallel "
          "write) before the job stops with an error naming the rank and the operation; it must exceed the "
          "longest step, evaluation or checkpoint of the run. 0 = wait forever")
          .allowed(">= 0"));
  return c;
}

EvaluationConfig read_evaluation(Section& s, EvaluationConfig c) {
  c.every = s.integer("every", c.every, at_least(0), "steps between evaluations; 0 = only at the end");
  c.resolution = s.integer_as<int>(
      "resolution", c.resolution, at_least(0),
      "nodes per axis of the evaluation samples (any grid the network accepts); 0 = the resolution being "
      "trained (with multigrid: the current level's)");
  c.samples =
      s.integer_as<int>("samples", c.samples, at_least(1),
                        "held-out samples (disjoint from training) compared with the reference solver");
  c.solver_tolerance = s.number("solver_tolerance", c.solver_tolerance, Range{0, 1, true, true},
                                "relative residual of the reference solves");
  return c;
}

OutputConfig read_output(Section& s, OutputConfig c, const EvaluationConfig& evaluation, bool samples_ok) {
  c.dir =
      s.string("dir", c.dir,
               Doc("run directory: summary.json, history.csv, fields, checkpoints, log").allowed("a path"));
  c.fields = s.boolean("fields", c.fields, "write predicted and reference fields (HDF5 + XDMF)");
  c.field_samples = s.integer_as<int>(
      "field_samples", c.field_samples, at_least(0),
      Doc("evaluation samples whose fields are written").allowed("<= `evaluation.samples` (when `fields`)"));
  if (c.fields && samples_ok && s.ok("field_samples") && c.field_samples > evaluation.samples)
    s.fail(
        "field_samples",
        fmt::format("'output.field_samples' ({}) must not exceed evaluation.samples ({}): fields are written "
                    "for evaluation samples",
                    c.field_samples, evaluation.samples));
  c.checkpoint_keep =
      s.integer_as<int>("checkpoint_keep", c.checkpoint_keep, at_least(1), "newest checkpoints kept");
  c.existing = s.choice<ExistingRun>(
      "existing", c.existing,
      "when `dir` holds another run (its deck or checkpoints) that this one does not continue: `refuse` "
      "(exit "
      "2, nothing touched) or `move_aside` (the old run is renamed `<dir>.<date>-<time>` and this one starts "
      "in a fresh `dir`)");
  return c;
}

CudaConfig read_cuda(Section& s, CudaConfig c) {
  c.conv_math = s.choice<ConvMathKind>(
      "conv_math", c.conv_math,
      "fp32 convolutions: `fp32` = FMA only (bitwise-stable, what the gradient tests use); `tf32` = tensor "
      "cores on sm_80+ with 10-bit mantissa products (PyTorch's default for convolutions); `fp16_conversion` "
      "= tensor cores on sm_70+ with inputs rounded to fp16");
  c.workspace_mb = s.number("workspace_mb", c.workspace_mb, at_least(0),
                            "largest cuDNN workspace one convolution algorithm may use, MiB; algorithms that "
                            "need more are passed over");
  c.algo_search = s.boolean("algo_search", c.algo_search,
                            "time the convolution algorithms once per input shape (cudnnFind) instead of "
                            "taking cuDNN's heuristic first choice");
  return c;
}

CpuConfig read_cpu(Section& s, CpuConfig c) {
  c.conv_algorithm = s.choice<ConvAlgorithmKind>(
      "conv_algorithm", c.conv_algorithm,
      "fp32 convolutions: `direct` = the plain sum of products (what the gradient tests use); `auto` = "
      "Winograd F(4x4, 3x3) for 2D 3x3 stride-1 convolutions with at least 32 channels in and out, "
      "1.3-1.9x faster there and about 1e-6 (relative) from direct, direct elsewhere");
  return c;
}

LossScalingConfig read_loss_scaling(Section& s, LossScalingConfig c) {
  c.enabled =
      s.boolean("enabled", c.enabled,
                Doc("scale the loss dynamically").default_is("`true` with `precision: fp16`, else `false`"));
  c.initial_scale = s.number("initial_scale", c.initial_scale, above(0),
                             Doc("the first step's scale").allowed("in [`min_scale`, `max_scale`]"));
  c.growth_factor = s.number("growth_factor", c.growth_factor, above(1),
                             "multiplies the scale after `growth_interval` clean steps");
  c.backoff_factor = s.number("backoff_factor", c.backoff_factor, Range{0, 1, true, true},
                              "multiplies the scale after an overflow");
  c.growth_interval = s.integer("growth_interval", c.growth_interval, at_least(1),
                                "clean steps in a row before the scale grows");
  c.min_scale = s.number("min_scale", c.min_scale, above(0),
                         Doc("the scale never goes below").allowed("<= `max_scale`"));
  c.max_scale = s.number("max_scale", c.max_scale, above(0), "the scale never goes above");
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

TimelineConfig read_timeline(Section& s, TimelineConfig c) {
  c.enabled =
      s.boolean("enabled", c.enabled,
                "write timeline.json (Chrome trace format: open in Perfetto or chrome://tracing): per "
                "rank, one track of layer backward/forward phases and one of bucket reductions");
  c.first_step =
      s.integer("first_step", c.first_step, at_least(1), "first step recorded (step 1 pays one-time setup)");
  c.steps = s.integer("steps", c.steps, at_least(1),
                      "number of steps recorded (events are kept in memory until the end of the run)");
  return c;
}

}  // namespace pdegen::config

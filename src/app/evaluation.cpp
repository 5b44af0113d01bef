// Held-out sample sets, their errors and their fields files (see evaluation.hpp).
#include "app/evaluation.hpp"

#include <algorithm>

#include "io/fields_file.hpp"

namespace pdegen::app {

SampleSet make_sample_set(const Problem& problem, uint64_t seed, uint64_t index_base, int64_t total,
                          const Communicator& comm, bool with_reference) {
  SampleSet set;
  set.has_reference = with_reference;
  set.total = total;
  set.share = share_of(total, comm.rank(), comm.size());
  for (int64_t e = set.share.begin; e < set.share.end; ++e)
    set.indices.push_back(index_base + static_cast<uint64_t>(e));
  if (set.indices.empty()) {
    set.input = Tensor::empty(problem.input_batch_shape(0));
    set.reference = Tensor::empty(problem.batch_shape(0));
    return set;
  }
  problem.sample(seed, set.indices, set.input);
  set.reference = with_reference ? problem.reference_of(seed, set.indices, set.input, &set.report)
                                 : Tensor::empty(problem.batch_shape(0));
  return set;
}

Tensor predict(Model& model, const Problem& problem, const Tensor& input, DType precision, int64_t batch) {
  const Device device = model.registry.flat_values().device();
  const int64_t n = input.dim(0);
  Tensor result;
  for (int64_t first = 0; first < n; first += batch) {
    const int64_t last = std::min(n, first + batch);
    const Tensor x = to_dtype(input.slice_batch(first, last).to(device), precision);
    const Tensor v = to_dtype(model.net->forward(x, Mode::eval), DType::f32);
    const Tensor u = problem.lift(v, input.slice_batch(first, last).to(device)).to(Device::cpu);
    if (first == 0 && last == n) return u;
    if (!result.defined()) {
      Shape shape = u.shape();
      shape[0] = n;
      result = Tensor::empty(shape, u.dtype(), Device::cpu, u.channel_block());
    }
    result.slice_batch(first, last).copy_from(u);
  }
  return result;
}

ErrorSummary summarize_error(const Problem& problem, const SampleSet& set, const Tensor& prediction,
                             const Communicator& comm, bool per_sample) {
  ErrorSummary s;
  s.samples = set.total;
  double sum = 0, mx = 0;
  std::vector<double> local;
  if (!set.indices.empty()) local = problem.error(prediction, set.reference);
  for (double e : local) sum += e, mx = std::max(mx, e);
  s.mean = comm.sum(sum) / static_cast<double>(std::max<int64_t>(1, set.total));
  s.max = comm.max(mx);
  if (per_sample) {
    s.per_sample.assign(static_cast<size_t>(set.total), 0.0);
    std::copy(local.begin(), local.end(), s.per_sample.begin() + set.share.begin);
    comm.allreduce_sum(s.per_sample.data(), set.total);  // each slot is written by one rank only
  }
  return s;
}

namespace {
// This rank's [first, last) of the set's first `count` samples.
Share first_share(const SampleSet& set, int64_t count) {
  count = std::min(count, set.total);
  return {std::min(set.share.begin, count), std::min(set.share.end, count)};
}
}  // namespace

Tensor first_rows(const SampleSet& set, const Tensor& t, int64_t count) {
  const int64_t mine = first_share(set, count).count();
  if (mine > 0) return t.slice_batch(0, mine);
  Shape none = t.shape();
  none[0] = 0;
  return Tensor::empty(none);
}

namespace {
// Channel 0 of an [n, c, ...] input: the field the input file names (the others are coordinates).
Tensor first_channel(const Tensor& t) {
  if (t.dim(1) == 1) return t;
  Shape shape = t.shape();
  shape[1] = 1;
  Tensor out = Tensor::empty(shape);
  const int64_t per = shape.numel() / std::max<int64_t>(shape[0], 1), c = t.dim(1);
  for (int64_t s = 0; s < shape[0]; ++s)
    std::copy_n(t.data<float>() + s * c * per, per, out.data<float>() + s * per);
  return out;
}
}  // namespace

std::vector<int64_t> sample_grid(const Problem& problem) {
  std::vector<int64_t> grid;
  const Shape s = problem.sample_shape();
  for (int d = 1; d < s.rank(); ++d) grid.push_back(s[d]);
  return grid;
}

FieldsMetadata fields_metadata(const Problem& problem, const std::string& deck_yaml) {
  return {std::string(problem.name()), problem.origin(), problem.spacing(), deck_yaml};
}

Tensor channel0_view(const Tensor& t, int64_t row) {
  PDEGEN_CHECK(t.device() == Device::cpu && t.is_plain() && t.dtype() == DType::f32,
               "channel0_view takes a plain fp32 host tensor, got {}", t.describe());
  Shape s = t.shape();
  s[0] = 1;
  s[1] = 1;
  return Tensor::view(t.slice_batch(row, row + 1).raw(), s, DType::f32, Device::cpu);
}

std::string write_set_fields(const std::string& file, const Problem& problem, const SampleSet& set,
                             int64_t count, const Tensor* prediction, const std::string& deck_yaml,
                             const Communicator& comm) {
  const Share rows = first_share(set, count);
  FieldsWriter writer(file, fields_metadata(problem, deck_yaml), comm.comm(), std::min(count, set.total),
                      rows.begin, rows.end);
  const Tensor input = first_channel(first_rows(set, set.input, count)),
               ref = first_rows(set, set.reference, count);
  writer.add_field(problem.input_name(), input);
  const std::string out = problem.output_name();
  if (prediction != nullptr) writer.add_field(out + "_pred", *prediction);
  if (set.has_reference) writer.add_field(out + "_ref", ref);
  if (prediction != nullptr && set.has_reference) writer.add_field("error", difference(*prediction, ref));
  writer.set_sample_index(std::vector<int64_t>(set.indices.begin(), set.indices.begin() + rows.count()));
  writer.write();
  return writer.xdmf_path();
}

}  // namespace pdegen::app

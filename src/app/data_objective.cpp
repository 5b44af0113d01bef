// The data objective (see data_objective.hpp).
#include "app/data_objective.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "app/evaluation.hpp"
#include "core/error.hpp"

namespace pdegen::app {

namespace {

// A bare name is a dataset of the fields group, as `pdegen dataset` writes them.
std::string dataset_path(const std::string& name) { return name.starts_with('/') ? name : "/fields/" + name; }

// The checkpoint keeps the fingerprint as a double: its top 53 bits, exactly.
double fingerprint_scalar(uint64_t f) { return static_cast<double>(f >> 11); }

}  // namespace

data::DatasetIndex load_dataset_index(const DataConfig& data, const Problem& problem,
                                      const Communicator& comm) {
  std::string bytes, error;
  if (comm.rank() == 0) {
    try {
      const DataFields fields = problem.data_fields();
      const std::string input = dataset_path(data.input == "auto" ? fields.input : data.input);
      const std::string target = dataset_path(data.target == "auto" ? fields.target : data.target);
      bytes = serialize(data::scan_dataset(data::expand_files(data.files), input, target,
                                           sample_grid(problem), std::string(problem.name())));
    } catch (const std::exception& e) {  // every rank must learn of it, or they would wait for rank 0
      error = e.what();
    }
  }
  comm.broadcast(error);
  if (!error.empty()) throw UserError(error);
  comm.broadcast(bytes);
  return data::deserialize(bytes);
}

DataObjective::DataObjective(const Problem& problem, const Deck& deck, const data::DatasetIndex& index)
    : problem_(problem),
      index_(index),
      loss_{deck.data.loss, deck.data.huber_delta},
      hybrid_(deck.training.objective == ObjectiveKind::hybrid),
      weight_(hybrid_ ? deck.data.weight : 1.0),
      prefetch_(deck.data.prefetch),
      order_(index.records() - static_cast<int64_t>(std::floor(static_cast<double>(index.records()) *
                                                               deck.data.validation_fraction)),
             deck.training.seed, deck.data.shuffle) {
  if (order_.records() < 1)
    throw UserError(
        fmt::format("data.validation_fraction {} leaves none of the dataset's {} records for training",
                    deck.data.validation_fraction, index.records()));
  reader_ = std::make_unique<data::RecordReader>(index_, prefetch_);
}

std::vector<int64_t> DataObjective::records_of(const std::vector<uint64_t>& global_indices) {
  std::vector<int64_t> records;
  records.reserve(global_indices.size());
  for (uint64_t g : global_indices) records.push_back(order_.record(g));
  return records;
}

void DataObjective::will_need(const std::vector<uint64_t>& global_indices) {
  reader_->request(records_of(global_indices));
}

void DataObjective::load(uint64_t seed, const std::vector<uint64_t>& global_indices,
                         const std::vector<int64_t>& records, Tensor& input, bool queued) {
  const Shape shape = problem_.batch_shape(static_cast<int64_t>(records.size()));
  if (!target_.defined() || target_.shape() != shape) target_ = Tensor::empty(shape);
  if (!field_.defined() || field_.shape() != shape) field_ = Tensor::empty(shape);
  if (queued)
    reader_->take(records, field_.data<float>(), target_.data<float>());
  else
    reader_->read(records, field_.data<float>(), target_.data<float>());
  problem_.input_from_data(field_, target_, seed, global_indices, input);
}

void DataObjective::inputs(uint64_t seed, const std::vector<uint64_t>& global_indices, Tensor& input) {
  load(seed, global_indices, records_of(global_indices), input, true);
}

double DataObjective::loss(const Tensor& output, const Tensor& input, double grad_scale, Tensor& d_output) {
  const Tensor u = problem_.lift(output, input);
  const Tensor u_host = u.to(Device::cpu);
  PDEGEN_CHECK(u_host.is_plain() && u_host.shape() == target_.shape(),
               "data loss: output {} against target {}", u_host.describe(), target_.describe());
  Tensor du = Tensor::empty(u_host.shape());
  const int64_t b = u_host.dim(0), n = u_host.numel() / std::max<int64_t>(b, 1);
  double sum = weight_ * data::data_loss(loss_, u_host.data<float>(), target_.data<float>(), b, n,
                                         grad_scale * weight_, du.data<float>());
  if (hybrid_) {
    Tensor du_physics;
    sum += problem_.loss(u, input, grad_scale, &du_physics, nullptr);
    const Tensor physics_host = du_physics.to(Device::cpu);
    float* g = du.data<float>();
    const float* p = physics_host.data<float>();
    for (int64_t i = 0; i < du.numel(); ++i) g[i] += p[i];
  }
  d_output = problem_.lift_backward(du.to(u.device()));
  return sum;
}

void DataObjective::add_state(int64_t next_sample,
                              std::vector<std::pair<std::string, double>>& scalars) const {
  const int64_t n = order_.records();
  scalars.emplace_back("data_epoch", static_cast<double>(next_sample / n));
  scalars.emplace_back("data_position", static_cast<double>(next_sample % n));
  scalars.emplace_back("data_records", static_cast<double>(n));
  scalars.emplace_back("data_fingerprint", fingerprint_scalar(index_.fingerprint));
}

void DataObjective::check_state(const CheckpointData& data, const std::string& file) const {
  const double records = data.scalar("data_records", -1);
  if (records < 0) return;  // a checkpoint of physics training: the deck check allowed the change
  if (records != static_cast<double>(order_.records()) ||
      data.scalar("data_fingerprint", -1) != fingerprint_scalar(index_.fingerprint))
    throw UserError(fmt::format(
        "{} was trained on a dataset of {} training records; data.files now gives {} training records{}: the "
        "epochs would not continue. Point data.files at the same files (they may have moved), or start "
        "afresh",
        file, static_cast<int64_t>(records), order_.records(),
        records == static_cast<double>(order_.records()) ? " with other contents" : ""));
}

double DataObjective::validation_loss(Model& model, DType precision, int64_t batch,
                                      const Communicator& comm) {
  const int64_t total = validation_records();
  if (total == 0) return NAN;
  const Share mine = share_of(total, comm.rank(), comm.size());
  double sum = 0;
  Tensor input;
  for (int64_t first = mine.begin; first < mine.end; first += batch) {
    const int64_t last = std::min(mine.end, first + batch);
    std::vector<int64_t> records;
    std::vector<uint64_t> ids;
    for (int64_t r = first; r < last; ++r) {
      records.push_back(order_.records() + r);
      ids.push_back(dataset_index_base + static_cast<uint64_t>(r));  // coordinates only
    }
    load(0, ids, records, input, false);
    const Tensor u = predict(model, problem_, input, precision, batch);
    sum += data::data_loss(loss_, u.data<float>(), target_.data<float>(), last - first, index_.sample_values,
                           0, nullptr);
  }
  return comm.sum(sum) / static_cast<double>(total);
}

void DataObjective::report(JsonObject& summary, int64_t next_sample, double train_seconds) const {
  const data::ReaderStats s = reader_->stats();
  JsonObject j;
  j.add("files", static_cast<int64_t>(index_.files.size()))
      .add("training_records", order_.records())
      .add("validation_records", validation_records())
      .add("epochs", static_cast<double>(next_sample) / static_cast<double>(order_.records()))
      .add("loss", std::string(name_of(loss_.kind)))
      .add("wait_seconds", s.wait_seconds)
      .add("wait_fraction", train_seconds > 0 ? s.wait_seconds / train_seconds : 0.0)
      .add("read_seconds", s.read_seconds)
      .add("read_mb", s.bytes / (1024.0 * 1024.0))
      .add("read_mb_per_s", s.read_seconds > 0 ? s.bytes / (1024.0 * 1024.0) / s.read_seconds : 0.0)
      .add("batches_read_ahead",
           s.batches > 0 ? static_cast<double>(s.prefetched) / static_cast<double>(s.batches) : 0.0);
  summary.add("data", j);
}

}  // namespace pdegen::app

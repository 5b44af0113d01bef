// Training from a dataset: the Objective that reads each sample's input and target from HDF5 files
// (data/), by global index, through a reader thread that reads the next micro-batches while the
// network computes. Position g of the sample stream is a record of the epoch order (data/
// epoch_order.hpp), so the loss is the same on any number of ranks, every training record is seen
// once per epoch, and a restart continues mid-epoch exactly. With `hybrid`, the problem's physics
// loss is added: physics + data.weight x data.
#pragma once

#include <memory>

#include "app/model.hpp"
#include "app/objective.hpp"
#include "app/run_files.hpp"
#include "data/data_loss.hpp"
#include "data/dataset_index.hpp"
#include "data/epoch_order.hpp"
#include "data/record_reader.hpp"
#include "parallel/communicator.hpp"

namespace pdegen::app {

// The index of the deck's dataset: rank 0 reads the files' metadata, every rank receives it (or the
// same UserError, naming the file and dataset, before training starts).
data::DatasetIndex load_dataset_index(const DataConfig& data, const Problem& problem,
                                      const Communicator& comm);

class DataObjective final : public Objective {
 public:
  // `problem` (for the lift and, with hybrid, the physics loss) and `index` must outlive it.
  DataObjective(const Problem& problem, const Deck& deck, const data::DatasetIndex& index);
  void inputs(uint64_t seed, const std::vector<uint64_t>& global_indices, Tensor& input) override;
  double loss(const Tensor& output, const Tensor& input, double grad_scale, Tensor& d_output) override;
  int read_ahead() const override { return prefetch_; }
  void will_need(const std::vector<uint64_t>& global_indices) override;
  void add_state(int64_t next_sample, std::vector<std::pair<std::string, double>>& scalars) const override;
  void check_state(const CheckpointData& data, const std::string& file) const override;
  // summary.json's "data": the dataset, the epochs up to `next_sample`, and the reader's figures.
  void report(JsonObject& summary, int64_t next_sample, double train_seconds) const;

  int64_t training_records() const { return order_.records(); }
  int64_t validation_records() const { return index_.records() - order_.records(); }
  // The mean data loss of the held-out records (collective; NaN without any), the network run in
  // `precision`, `batch` samples per forward.
  double validation_loss(Model& model, DType precision, int64_t batch, const Communicator& comm);

 private:
  std::vector<int64_t> records_of(const std::vector<uint64_t>& global_indices);
  // Reads `records` into target_ and, through the problem, `input`.
  // `queued`: through the reader's queue (training), else read here (held-out records).
  void load(uint64_t seed, const std::vector<uint64_t>& global_indices, const std::vector<int64_t>& records,
            Tensor& input, bool queued);

  const Problem& problem_;
  const data::DatasetIndex& index_;
  data::DataLoss loss_;
  bool hybrid_;
  double weight_;
  int prefetch_;
  data::EpochOrder order_;
  std::unique_ptr<data::RecordReader> reader_;
  Tensor target_, field_;  // of the last inputs(): the target and the input field, [b, sample_shape]
};

}  // namespace pdegen::app

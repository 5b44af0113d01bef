// Reads dataset records (input and target of a sample) with plain preads at the offsets the
// DatasetIndex found, on a background thread that reads the batches training will ask for next
// while the network computes, so reading overlaps compute. HDF5 is not called here.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "data/dataset_index.hpp"

namespace pdegen::data {

// What reading cost, for summary.json.
struct ReaderStats {
  double wait_seconds = 0;              // training waited for data (a read not finished, or not asked ahead)
  double read_seconds = 0;              // spent in preads and conversion, on either thread
  double bytes = 0;                     // read from the files
  int64_t batches = 0, prefetched = 0;  // batches taken, of which read ahead
};

class RecordReader {
 public:
  // Opens every file of `index` (which must outlive the reader); `depth` batches may be read ahead.
  RecordReader(const DatasetIndex& index, int depth);
  ~RecordReader();
  RecordReader(const RecordReader&) = delete;
  RecordReader& operator=(const RecordReader&) = delete;

  // Queues reading `records` in the background unless already queued or `depth` reads are pending.
  void request(const std::vector<int64_t>& records);
  // Fills input and target ([records.size() * sample_values] fp32 each) with the records: from the
  // queued read of exactly these records (reads queued before it are dropped), else read here
  // (the queue is left as it is).
  // Throws IoError when a file cannot be read (truncated since it was scanned, a failing disk).
  void take(const std::vector<int64_t>& records, float* input, float* target);
  // Reads without the queue (held-out records).
  void read(const std::vector<int64_t>& records, float* input, float* target);
  ReaderStats stats() const;

 private:
  struct Job {
    std::vector<int64_t> records;
    std::vector<float> input, target;
    bool started = false, done = false;
    std::exception_ptr error;
  };
  void read_records(const std::vector<int64_t>& records, float* input, float* target, double& bytes) const;
  void read_field(const FieldColumn& column, int64_t record, float* out) const;
  void loop();

  const DatasetIndex& index_;
  int depth_;
  std::vector<int> fds_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool stopping_ = false;
  ReaderStats stats_;
  std::thread thread_;
};

}  // namespace pdegen::data

// The record reader (see record_reader.hpp).
#include "data/record_reader.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/error.hpp"
#include "core/timer.hpp"

namespace pdegen::data {

RecordReader::RecordReader(const DatasetIndex& index, int depth) : index_(index), depth_(depth) {
  for (const std::string& f : index.files) {
    const int fd = ::open(f.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      for (int open_fd : fds_) ::close(open_fd);
      throw IoError(fmt::format("{}: cannot open it for reading: {}", f, std::strerror(errno)));
    }
    fds_.push_back(fd);
  }
  if (depth_ > 0) thread_ = std::thread([this] { loop(); });
}

RecordReader::~RecordReader() {
  {
    const std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  if (thread_.joinable()) thread_.join();
  for (int fd : fds_) ::close(fd);
}

void RecordReader::read_field(const FieldColumn& column, int64_t record, float* out) const {
  const auto r = static_cast<size_t>(record);
  const int file = index_.file_of[r];
  const int bytes_per_value = column.element_bytes[static_cast<size_t>(file)];
  const auto n = static_cast<size_t>(index_.sample_values);
  std::vector<double> wide(bytes_per_value == 8 ? n : 0);
  char* dst = bytes_per_value == 8 ? reinterpret_cast<char*>(wide.data()) : reinterpret_cast<char*>(out);
  const size_t total = n * static_cast<size_t>(bytes_per_value);
  for (size_t done = 0; done < total;) {
    const ssize_t got = ::pread(fds_[static_cast<size_t>(file)], dst + done, total - done,
                                static_cast<off_t>(column.offset[r] + done));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0)
      throw IoError(fmt::format("{}: reading sample {} of '{}' failed: {}",
                                index_.files[static_cast<size_t>(file)], record, column.name,
                                got == 0 ? "the file ends early (truncated?)" : std::strerror(errno)));
    done += static_cast<size_t>(got);
  }
  for (size_t i = 0; i < wide.size(); ++i) out[i] = static_cast<float>(wide[i]);
}

void RecordReader::read_records(const std::vector<int64_t>& records, float* input, float* target,
                                double& bytes) const {
  const int64_t n = index_.sample_values;
  for (size_t i = 0; i < records.size(); ++i) {
    PDEGEN_CHECK(records[i] >= 0 && records[i] < index_.records(), "record {} outside the dataset's {}",
                 records[i], index_.records());
    read_field(index_.input, records[i], input + static_cast<int64_t>(i) * n);
    read_field(index_.target, records[i], target + static_cast<int64_t>(i) * n);
    const auto file = static_cast<size_t>(index_.file_of[static_cast<size_t>(records[i])]);
    bytes += static_cast<double>(n * (index_.input.element_bytes[file] + index_.target.element_bytes[file]));
  }
}

void RecordReader::loop() {
  std::unique_lock lock(mutex_);
  while (true) {
    std::shared_ptr<Job> job;
    changed_.wait(lock, [&] {
      if (stopping_) return true;
      for (const auto& j : queue_)
        if (!j->started) return true;
      return false;
    });
    if (stopping_) return;
    for (const auto& j : queue_)
      if (!j->started) {
        job = j;
        break;
      }
    job->started = true;
    lock.unlock();
    Timer t;
    double bytes = 0;
    try {
      read_records(job->records, job->input.data(), job->target.data(), bytes);
    } catch (...) {
      job->error = std::current_exception();
    }
    lock.lock();
    stats_.read_seconds += t.seconds();
    stats_.bytes += bytes;
    job->done = true;
    changed_.notify_all();
  }
}

void RecordReader::request(const std::vector<int64_t>& records) {
  if (depth_ == 0) return;
  {
    const std::lock_guard lock(mutex_);
    for (const auto& j : queue_)
      if (j->records == records) return;
    if (static_cast<int>(queue_.size()) >= depth_) return;
    auto job = std::make_shared<Job>();
    job->records = records;
    job->input.resize(records.size() * static_cast<size_t>(index_.sample_values));
    job->target.resize(job->input.size());
    queue_.push_back(std::move(job));
  }
  changed_.notify_all();
}

void RecordReader::take(const std::vector<int64_t>& records, float* input, float* target) {
  Timer waited;
  std::shared_ptr<Job> job;
  {
    std::unique_lock lock(mutex_);
    ++stats_.batches;
    const auto match =
        std::find_if(queue_.begin(), queue_.end(), [&](const auto& j) { return j->records == records; });
    if (match != queue_.end()) {
      job = *match;
      queue_.erase(queue_.begin(), match + 1);  // reads queued before it will not be asked for any more
    }
    if (job && !job->started) {
      job->started = true;  // taken from the queue before the thread began it: read it here
      job.reset();
    } else if (job) {
      changed_.wait(lock, [&] { return job->done; });
      ++stats_.prefetched;
    }
  }
  if (job) {
    if (job->error) std::rethrow_exception(job->error);
    std::memcpy(input, job->input.data(), job->input.size() * sizeof(float));
    std::memcpy(target, job->target.data(), job->target.size() * sizeof(float));
    const std::lock_guard lock(mutex_);
    stats_.wait_seconds += waited.seconds();
    return;
  }
  read(records, input, target);
  const std::lock_guard lock(mutex_);
  stats_.wait_seconds += waited.seconds();
}

void RecordReader::read(const std::vector<int64_t>& records, float* input, float* target) {
  Timer t;
  double bytes = 0;
  read_records(records, input, target, bytes);
  const std::lock_guard lock(mutex_);
  stats_.read_seconds += t.seconds();
  stats_.bytes += bytes;
}

ReaderStats RecordReader::stats() const {
  const std::lock_guard lock(mutex_);
  return stats_;
}

}  // namespace pdegen::data

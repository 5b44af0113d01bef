// The files a run leaves for scripts: summary.json (an ordered JSON object; written whole through
// io/atomic_file.hpp) and history.csv (one row per logged step, flushed as it goes).
#pragma once

#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <variant>
#include <vector>

namespace pdegen::app {

// An ordered JSON object: keys come out in the order they were added.
class JsonObject {
 public:
  JsonObject& add(const std::string& key, double value);
  JsonObject& add(const std::string& key, int64_t value);
  JsonObject& add(const std::string& key, int value) { return add(key, static_cast<int64_t>(value)); }
  JsonObject& add(const std::string& key, const std::string& value);
  JsonObject& add(const std::string& key, const char* value) { return add(key, std::string(value)); }
  JsonObject& add(const std::string& key, bool value);
  JsonObject& add(const std::string& key, const JsonObject& value);
  JsonObject& add(const std::string& key, const std::vector<double>& values);      // a JSON array
  JsonObject& add(const std::string& key, const std::vector<JsonObject>& values);  // a JSON array
  std::string dump(int indent = 0) const;

 private:
  using Objects = std::vector<JsonObject>;
  using Value = std::variant<double, int64_t, std::string, bool, std::shared_ptr<JsonObject>,
                             std::vector<double>, std::shared_ptr<Objects>>;
  std::vector<std::pair<std::string, Value>> entries_;
};

std::string json_escape(const std::string& s);

// This process's resident-set high-water mark (getrusage), in MiB, for the summaries.
double peak_rss_mb();

// history.csv: a header, then one row per logged step. On restart the rows after the restart step
// are dropped, so the file always describes the run that produced the current state.
class HistoryWriter {
 public:
  HistoryWriter(const std::string& path, const std::vector<std::string>& columns, int64_t keep_until_step);
  void row(const std::vector<std::string>& values);

 private:
  std::string path_;
  std::ofstream out_;
  size_t columns_;
};

}  // namespace pdegen::app

// summary.json, history.csv and atomic file writes (see run_files.hpp).
#include "app/run_files.hpp"

#include <fmt/format.h>
#include <sys/resource.h>

#include <cerrno>
#include <cmath>
#include <cstring>

#include "core/error.hpp"
#include "io/atomic_file.hpp"

namespace pdegen::app {

double peak_rss_mb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;  // Linux reports KiB
}

JsonObject& JsonObject::add(const std::string& key, double value) {
  entries_.emplace_back(key, value);
  return *this;
}
JsonObject& JsonObject::add(const std::string& key, int64_t value) {
  entries_.emplace_back(key, value);
  return *this;
}
JsonObject& JsonObject::add(const std::string& key, const std::string& value) {
  entries_.emplace_back(key, value);
  return *this;
}
JsonObject& JsonObject::add(const std::string& key, bool value) {
  entries_.emplace_back(key, value);
  return *this;
}
JsonObject& JsonObject::add(const std::string& key, const JsonObject& value) {
  entries_.emplace_back(key, std::make_shared<JsonObject>(value));
  return *this;
}
JsonObject& JsonObject::add(const std::string& key, const std::vector<double>& values) {
  entries_.emplace_back(key, values);
  return *this;
}
JsonObject& JsonObject::add(const std::string& key, const std::vector<JsonObject>& values) {
  entries_.emplace_back(key, std::make_shared<Objects>(values));
  return *this;
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20)
          out += fmt::format("\\u{:04x}", static_cast<int>(c));
        else
          out += c;
    }
  }
  return out;
}

namespace {
// JSON has no NaN/Inf: they become null, which scripts can test for.
std::string json_number(double d) { return std::isfinite(d) ? fmt::format("{:.9g}", d) : "null"; }
}  // namespace

std::string JsonObject::dump(int indent) const {
  const std::string pad(static_cast<size_t>(indent + 2), ' ');
  std::string out = "{\n";
  for (size_t i = 0; i < entries_.size(); ++i) {
    const auto& [key, value] = entries_[i];
    out += fmt::format("{}\"{}\": ", pad, json_escape(key));
    if (auto d = std::get_if<double>(&value)) {
      out += json_number(*d);
    } else if (auto numbers = std::get_if<std::vector<double>>(&value)) {
      out += "[";
      for (size_t k = 0; k < numbers->size(); ++k) out += (k ? ", " : "") + json_number((*numbers)[k]);
      out += "]";
    } else if (auto objects = std::get_if<std::shared_ptr<Objects>>(&value)) {
      out += "[";
      for (size_t k = 0; k < (*objects)->size(); ++k)
        out += (k ? ", " : "") + (**objects)[k].dump(indent + 2);
      out += "]";
    } else if (auto n = std::get_if<int64_t>(&value)) {
      out += std::to_string(*n);
    } else if (auto s = std::get_if<std::string>(&value)) {
      out += fmt::format("\"{}\"", json_escape(*s));
    } else if (auto b = std::get_if<bool>(&value)) {
      out += *b ? "true" : "false";
    } else {
      out += std::get<std::shared_ptr<JsonObject>>(value)->dump(indent + 2);
    }
    out += i + 1 < entries_.size() ? ",\n" : "\n";
  }
  return out + std::string(static_cast<size_t>(indent), ' ') + "}";
}

HistoryWriter::HistoryWriter(const std::string& path, const std::vector<std::string>& columns,
                             int64_t keep_until_step)
    : path_(path), columns_(columns.size()) {
  const std::string header = fmt::format("{}", fmt::join(columns, ","));
  std::string kept;
  if (keep_until_step > 0) {
    // Keep the rows of steps <= keep_until_step of an earlier run with the same columns.
    std::ifstream in(path);
    std::string line;
    if (in && std::getline(in, line) && line == header) {
      while (std::getline(in, line)) {
        const auto comma = line.find(',');
        if (comma == std::string::npos) continue;
        try {
          if (std::stoll(line.substr(0, comma)) <= keep_until_step) kept += line + "\n";
        } catch (const std::exception&) {
        }
      }
    }
  }
  write_text_file_atomically(path, header + "\n" + kept);
  out_.open(path, std::ios::app);
  if (!out_) throw IoError(fmt::format("cannot open '{}' for appending: {}", path, std::strerror(errno)));
}

void HistoryWriter::row(const std::vector<std::string>& values) {
  PDEGEN_CHECK(values.size() == columns_, "history row has {} values for {} columns", values.size(),
               columns_);
  out_ << fmt::format("{}", fmt::join(values, ",")) << '\n';
  out_.flush();  // a job killed at its time limit still leaves every logged step
  if (!out_) throw IoError(fmt::format("cannot write '{}': {}", path_, std::strerror(errno)));
}

}  // namespace pdegen::app

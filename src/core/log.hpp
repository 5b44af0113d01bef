// Logging set-up: rank 0 logs at the chosen level; other ranks only warnings and errors (prefixed
// with their rank) unless all ranks are asked to log. Optional log file per run.
#pragma once

#include <spdlog/spdlog.h>

#include <string>

namespace pdegen {

struct LogOptions {
  int rank = 0;
  int size = 1;
  bool all_ranks = false;
  spdlog::level::level_enum level = spdlog::level::info;
  std::string file;  // empty: console only
};

void init_logging(const LogOptions& options);
// Adds a file sink (rank 0, or every rank when logging all) once the run directory exists.
void add_log_file(const std::string& path);

}  // namespace pdegen

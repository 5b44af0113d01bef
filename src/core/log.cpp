// Rank-aware spdlog set-up (see log.hpp).
#include "core/log.hpp"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>

namespace pdegen {

namespace {
LogOptions g_options;
}

void init_logging(const LogOptions& options) {
  g_options = options;
  auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>("pdegen", console);
  // One parsable line per message; ranks other than 0 say who they are.
  logger->set_pattern(options.size > 1 ? fmt::format("[%Y-%m-%d %H:%M:%S.%e] [%l] [rank {}] %v", options.rank)
                                       : "[%Y-%m-%d %H:%M:%S.%e] [%l] %v");
  const bool speaks = options.rank == 0 || options.all_ranks;
  logger->set_level(speaks ? options.level : spdlog::level::warn);
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(logger);
  if (!options.file.empty()) add_log_file(options.file);
}

void add_log_file(const std::string& path) {
  if (!(g_options.rank == 0 || g_options.all_ranks)) return;
  const std::string file =
      g_options.all_ranks && g_options.size > 1 ? fmt::format("{}.rank{}", path, g_options.rank) : path;
  auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(file, /*truncate=*/false);
  sink->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%l] %v");
  spdlog::default_logger()->sinks().push_back(sink);
}

}  // namespace pdegen

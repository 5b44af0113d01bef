// One run per run directory (see run_directory.hpp).
#include "app/run_directory.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>

#include "config/deck_diff.hpp"
#include "core/error.hpp"
#include "io/atomic_file.hpp"
#include "io/checkpoint.hpp"

namespace pdegen::app {

namespace fs = std::filesystem;

namespace {

std::string timestamp() {
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  localtime_r(&now, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y%m%d-%H%M%S", &tm);
  return text;
}

// `base`, or `base-2`, `base-3`, ... whichever does not exist yet.
fs::path unused_path(const std::string& base) {
  fs::path path = base;
  for (int i = 2; fs::exists(path); ++i) path = fmt::format("{}-{}", base, i);
  return path;
}

// Keys a restart may change without changing the trajectory it continues: how long, how often it
// logs, checkpoints and evaluates, where it writes, and how it is spread over ranks and devices.
bool continuation_key(const std::string& key) {
  for (const char* prefix : {"output.", "timeline.", "parallel.", "cuda.", "cpu.", "evaluation."})
    if (key.starts_with(prefix)) return true;
  for (const char* exact : {"training.steps", "training.restart", "training.log_every",
                            "training.checkpoint_every", "training.allow_deck_changes", "device",
                            // the same records elsewhere (staged to node-local storage): the
                            // checkpoint's dataset fingerprint is what must match
                            "data.files", "data.prefetch"})
    if (key == exact) return true;
  return false;
}

std::vector<DeckChange> trajectory_changes(const std::string& stored, const std::string& current) {
  std::vector<DeckChange> out;
  for (DeckChange& c : deck_changes(stored, current))
    if (!continuation_key(c.key)) out.push_back(std::move(c));
  return out;
}

std::string holder_of(int fd) {
  char text[256] = {};
  const ssize_t n = ::pread(fd, text, sizeof text - 1, 0);
  std::string holder = n > 0 ? std::string(text, static_cast<size_t>(n)) : "";
  while (!holder.empty() && (holder.back() == '\n' || holder.back() == '\0')) holder.pop_back();
  return holder.empty() ? "unknown" : holder;
}

// What the directory holds of an earlier run: its deck, its checkpoints, its history.
bool holds_run(const fs::path& dir) {
  return fs::exists(dir / "deck.resolved.yaml") || fs::exists(dir / "history.csv") ||
         !checkpoints_in((dir / "checkpoints").string()).empty();
}

bool inside(const fs::path& file, const fs::path& dir) {
  std::error_code ec;
  return !file.empty() && fs::equivalent(fs::absolute(file).parent_path(), dir, ec);
}

}  // namespace

RunLock::RunLock(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw UserError(fmt::format("cannot create output.dir '{}': {}", dir.string(), ec.message()));
  const std::string path = (dir / ".lock").string();
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw IoError(fmt::format("cannot open '{}': {}", path, std::strerror(errno)));
  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  if (::fcntl(fd_, F_SETLK, &lock) != 0) {
    const std::string holder = holder_of(fd_);
    ::close(fd_);
    fd_ = -1;
    throw UserError(fmt::format(
        "output.dir '{}' is in use by another pdegen run ({}): wait for it to end, or choose another "
        "output.dir",
        dir.string(), holder));
  }
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  const std::string me = fmt::format("pid {} on {} since {}\n", ::getpid(), host, timestamp());
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, me.data(), me.size(), 0) < 0)
    spdlog::warn("cannot record this run in '{}': {}", path, std::strerror(errno));
}

RunLock::~RunLock() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the lock
}

RunLock::RunLock(RunLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

RunLock& RunLock::operator=(RunLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

void claim_run_directory(const Deck& deck, const std::string& deck_yaml, const std::string& restart_file,
                         RunLock& lock) {
  const fs::path dir = deck.output.dir;
  for (const fs::path& d : {dir, dir / "checkpoints"})
    for (const std::string& file : remove_stale_temporaries(d.string()))
      spdlog::info("removed '{}', left by a writer that was stopped", file);
  if (inside(restart_file, dir / "checkpoints") || !holds_run(dir)) return;
  // A run killed before its first checkpoint, started again with the same deck, starts over.
  const fs::path stored = dir / "deck.resolved.yaml";
  if (deck.training.restart == "latest" && restart_file.empty() && fs::exists(stored) &&
      trajectory_changes(read_file_bytes(stored.string()), deck_yaml).empty())
    return;
  if (deck.output.existing == ExistingRun::refuse)
    throw UserError(fmt::format(
        "output.dir '{}' holds another run (its deck, history or checkpoints), which this one would "
        "overwrite: continue it with training.restart=latest, move it aside and start afresh with "
        "output.existing=move_aside, or choose another output.dir",
        dir.string()));
  fs::path base = fs::absolute(dir).lexically_normal();
  if (!base.has_filename()) base = base.parent_path();  // "runs/x/" names runs/x
  const fs::path aside = unused_path(fmt::format("{}.{}", base.string(), timestamp()));
  fs::rename(dir, aside);
  lock = RunLock(dir);
  spdlog::warn("output.dir '{}' held another run: moved it to '{}'", dir.string(), aside.string());
}

void set_aside_later_trajectory(const fs::path& dir, int64_t step) {
  std::vector<fs::path> later;
  for (const auto& [s, path] : checkpoints_in((dir / "checkpoints").string()))
    if (s > step) later.emplace_back(path);
  if (later.empty()) return;
  const fs::path aside = unused_path((dir / ("abandoned-" + timestamp())).string());
  fs::create_directories(aside / "checkpoints");
  for (const fs::path& p : later) fs::rename(p, aside / "checkpoints" / p.filename());
  for (const char* name : {"summary.json", "fields.h5", "fields.xdmf", "timeline.json"})
    if (fs::exists(dir / name)) fs::rename(dir / name, aside / name);
  spdlog::warn(
      "rewinding to step {}: the {} later checkpoint(s) and the end-of-run files of the trajectory "
      "left behind are in '{}'",
      step, later.size(), aside.string());
}

void check_restart_deck(const std::string& stored, const std::string& current, const std::string& file,
                        bool allow) {
  const std::vector<DeckChange> changes = trajectory_changes(stored, current);
  if (changes.empty()) return;
  if (allow) {
    for (const DeckChange& c : changes)
      spdlog::warn("restart with a changed deck (training.allow_deck_changes): {}",
                   describe(c, "the checkpoint", "this run"));
    return;
  }
  throw UserError(fmt::format(
      "checkpoint '{}' was written by a run with another configuration: {}{}. Restart with the deck that "
      "made it, or set training.allow_deck_changes=true to continue with the changes deliberately",
      file, describe(changes.front(), "the checkpoint", "this run"),
      changes.size() > 1 ? fmt::format(" (and {} more)", changes.size() - 1) : ""));
}

void check_prediction_deck(const std::string& stored, const std::string& current, const std::string& file) {
  for (const DeckChange& c : deck_changes(stored, current)) {
    if (c.key.starts_with("network."))
      throw UserError(fmt::format("checkpoint '{}' holds another network: {}", file,
                                  describe(c, "the checkpoint", "this deck")));
    if (c.key.starts_with("problem."))
      spdlog::warn("predicting outside the training distribution: {}",
                   describe(c, "training", "this prediction"));
  }
}

}  // namespace pdegen::app

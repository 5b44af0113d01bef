// Atomic publication of output files: write to a temporary name, flush, rename.
#include "io/atomic_file.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/error.hpp"

namespace pdegen {

namespace fs = std::filesystem;

namespace {

[[noreturn]] void fail(const std::string& what, const std::string& path, int err) {
  throw IoError(fmt::format("cannot {} '{}': {}", what, path, std::strerror(err)));
}

// Flushes a file (or directory) to stable storage so the rename below cannot overtake its data.
void sync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) fail("open to flush", path, errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  // Some file systems (and /dev/shm-like mounts) refuse fsync on directories; the data is safe.
  if (rc != 0 && !(directory && (err == EINVAL || err == EBADF))) fail("flush to disk", path, err);
}

void write_all(int fd, const char* data, size_t bytes, const std::string& path) {
  while (bytes > 0) {
    const ssize_t n = ::write(fd, data, bytes);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("write", path, n < 0 ? errno : ENOSPC);
    data += n;
    bytes -= static_cast<size_t>(n);
  }
}

}  // namespace

std::string temporary_path(const std::string& path) { return path + ".tmp"; }

void publish_file(const std::string& tmp, const std::string& path) {
  sync_path(tmp, false);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) fail("rename '" + tmp + "' to", path, errno);
  fs::path dir = fs::path(path).parent_path();
  sync_path(dir.empty() ? "." : dir.string(), true);
}

void write_file_atomically(const std::string& path, const void* data, size_t bytes) {
  const std::string tmp = temporary_path(path);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("create", tmp, errno);
  try {
    write_all(fd, static_cast<const char*>(data), bytes, tmp);
    if (::close(fd) != 0) fail("write", tmp, errno);  // NFS reports a full disk at close
  } catch (...) {
    ::close(fd);
    std::remove(tmp.c_str());
    throw;
  }
  try {
    publish_file(tmp, path);
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
}

void write_text_file_atomically(const std::string& path, const std::string& text) {
  write_file_atomically(path, text.data(), text.size());
}

std::string read_file_bytes(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("open", path, errno);
  std::string out;
  if (const off_t size = ::lseek(fd, 0, SEEK_END); size > 0) out.reserve(static_cast<size_t>(size));
  ::lseek(fd, 0, SEEK_SET);
  char buffer[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      fail("read", path, err);
    }
    if (n == 0) break;
    out.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

std::vector<std::string> remove_stale_temporaries(const std::string& dir) {
  std::vector<std::string> removed;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return removed;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().extension() != ".tmp" || !entry.is_regular_file(ec)) continue;
    if (fs::remove(entry.path(), ec)) removed.push_back(entry.path().string());
  }
  return removed;
}

}  // namespace pdegen

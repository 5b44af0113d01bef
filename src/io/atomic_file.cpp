// Atomic publication of output files: write to a temporary name, flush, rename.
#include "io/atomic_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.hpp"

namespace pdegen {

namespace {

// Flushes a file (or directory) to stable storage so the rename below cannot overtake its data.
void sync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) PDEGEN_THROW("cannot open '{}' to flush it: {}", path, std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  // Some file systems (and /dev/shm-like mounts) refuse fsync on directories; the data is safe.
  if (rc != 0 && !(directory && (err == EINVAL || err == EBADF)))
    PDEGEN_THROW("cannot flush '{}' to disk: {}", path, std::strerror(err));
}

}  // namespace

std::string temporary_path(const std::string& path) { return path + ".tmp"; }

void publish_file(const std::string& tmp, const std::string& path) {
  sync_path(tmp, false);
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    PDEGEN_THROW("cannot rename '{}' to '{}': {}", tmp, path, std::strerror(errno));
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  sync_path(dir.empty() ? "." : dir.string(), true);
}

void write_text_file_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = temporary_path(path);
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) PDEGEN_THROW("cannot create '{}': {}", tmp, std::strerror(errno));
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    out.close();
    if (!out) PDEGEN_THROW("cannot write '{}' (disk full?)", tmp);
  }
  publish_file(tmp, path);
}

}  // namespace pdegen

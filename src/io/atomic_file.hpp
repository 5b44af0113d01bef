// Files that appear whole or not at all: writers fill `<path>.tmp`, then publish_file() flushes it
// to the disk and renames it over `path` (rename is atomic on POSIX file systems), so a crash or a
// full disk never leaves a truncated file under a name that readers trust. A failed write removes
// its `.tmp` and throws IoError naming the file and the system's reason (e.g. no space left).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace pdegen {

// The name a file is written under before it is published: `<path>.tmp`.
std::string temporary_path(const std::string& path);
// fsync(tmp), rename(tmp, path), fsync(the directory). Throws IoError naming both paths.
void publish_file(const std::string& tmp, const std::string& path);
// Writes `bytes` bytes to `<path>.tmp` and publishes it as `path`.
void write_file_atomically(const std::string& path, const void* data, size_t bytes);
void write_text_file_atomically(const std::string& path, const std::string& text);
// The whole file; throws IoError naming it when it cannot be read.
std::string read_file_bytes(const std::string& path);
// Deletes the `*.tmp` files a killed writer left in `dir` (not recursive); returns their names.
std::vector<std::string> remove_stale_temporaries(const std::string& dir);

}  // namespace pdegen

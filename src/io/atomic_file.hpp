// Files that appear whole or not at all: writers fill `<path>.tmp`, then publish_file() flushes it
// to the disk and renames it over `path` (rename is atomic on POSIX file systems), so a crash or a
// full disk never leaves a truncated file under a name that readers trust.
#pragma once

#include <string>

namespace pdegen {

// The name a file is written under before it is published: `<path>.tmp`.
std::string temporary_path(const std::string& path);
// fsync(tmp), rename(tmp, path), fsync(the directory). Throws pdegen::Error naming both paths.
void publish_file(const std::string& tmp, const std::string& path);
// Writes `text` to `<path>.tmp` and publishes it as `path`.
void write_text_file_atomically(const std::string& path, const std::string& text);

}  // namespace pdegen

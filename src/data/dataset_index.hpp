// Where every sample of a training dataset lies on disk. The HDF5 files are read once, on one rank,
// with HDF5 (names, types, shapes, layout, where each sample's bytes are); after that a sample is one
// pread of raw bytes per field, which a reader thread can do without HDF5 (whose library is not
// thread-safe in the Debian build). Only what can be read that way is accepted: a float dataset,
// little-endian, stored contiguously or in chunks of whole samples, without filters.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pdegen::data {

// One field of every sample (the network input, or the target).
struct FieldColumn {
  std::string name;                // the dataset path in each file, e.g. "/fields/u_ref"
  std::vector<int> element_bytes;  // per file: 4 (fp32) or 8 (fp64, read as fp32)
  std::vector<uint64_t> offset;    // per record: byte offset of the sample in its file
};

struct DatasetIndex {
  std::vector<std::string> files;  // in the order their records are numbered
  std::vector<int32_t> file_of;    // per record
  int64_t sample_values = 0;       // values of one field of one sample (the grid's nodes)
  FieldColumn input, target;
  uint64_t fingerprint = 0;  // of the files' names, sample counts and /sample_index values

  int64_t records() const { return static_cast<int64_t>(file_of.size()); }
};

// The files a `data.files` pattern names (a path or a glob), sorted; throws UserError naming the
// pattern when it matches no file.
std::vector<std::string> expand_files(const std::string& pattern);

// Reads `files` and finds, for every sample, where `input` and `target` (dataset paths) hold it.
// Each must be [N, grid...] or [N, 1, grid...] with `grid` the problem's nodes (slowest axis first)
// and the same N for both in a file; a file whose `pde` attribute names another problem than `pde`
// is refused. Every problem throws UserError naming the file, the dataset and what was expected.
// The reading runs in a forked child process, so that a file which crashes HDF5 is an error too.
DatasetIndex scan_dataset(const std::vector<std::string>& files, const std::string& input,
                          const std::string& target, const std::vector<int64_t>& grid,
                          const std::string& pde);

// The index as bytes and back (rank 0 scans, the others receive it).
std::string serialize(const DatasetIndex& index);
DatasetIndex deserialize(const std::string& bytes);

}  // namespace pdegen::data

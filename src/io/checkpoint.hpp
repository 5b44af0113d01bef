// Checkpoints: everything a run needs to continue bit for bit, in one HDF5 file per save,
// `<output.dir>/checkpoints/step_<N>.h5` (N zero-padded to 8 digits).
//
// Built in memory by one rank, written to `<path>.tmp`, flushed, renamed, then read back and
// checked: a file under the final name is always complete, and a full disk is an error, never a
// half-written file. Tensors are stored unconverted (fp32 as IEEE fp32, ...), so a round trip is
// bit-exact. The first 512 bytes (HDF5's user block, which HDF5 tools skip) are a text header with
// the CRC-32 and length of the rest: a damaged byte anywhere, the stored deck included, is
// reported instead of read (format version 1 files, which predate it, rely on the per-dataset
// Fletcher-32 sums alone).
//
// Layout: root attributes format_version, step, seed, next_sample, deck, parameter_layout,
// pdegen_version; datasets /parameters, /optimizer_state/<name>, /buffers/<name> (1-D, with
// attributes `shape` and `dtype`), /scalars (one attribute per scalar). Groups and the scalars keep
// creation order, so the named lists come back in the order they were written.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/tensor.hpp"

namespace pdegen {

class ParameterRegistry;

struct CheckpointData {
  static constexpr int current_format_version = 2;
  int format_version = current_format_version;
  int64_t step = 0;
  uint64_t seed = 0;
  int64_t next_sample = 0;  // sampler position (global sample index)
  std::string deck_yaml;    // the resolved deck
  Tensor parameters;        // flat fp32 values (ParameterRegistry::flat_values())
  std::vector<std::pair<std::string, Tensor>> optimizer_state, buffers;  // named flat tensors
  std::vector<std::pair<std::string, double>> scalars;  // e.g. loss scale, best loss, wall time
  std::string parameter_layout;                         // names/shapes/offsets, to reject a mismatched net

  // The scalar called `name`, or `fallback` when the checkpoint has none (older or other runs).
  double scalar(std::string_view name, double fallback) const {
    for (const auto& [n, v] : scalars)
      if (n == name) return v;
    return fallback;
  }
};

// Writes `path` atomically (creating its directory) and verifies it on disk; throws IoError naming
// the file and the reason (no space left, ...). Tensors must be on the host; they are stored in
// logical (plain) order.
void write_checkpoint(const std::string& path, const CheckpointData& data);
// Throws UserError naming the file when it is missing, truncated, damaged (its CRC), not a pdegen
// checkpoint, or of a newer format version.
CheckpointData read_checkpoint(const std::string& path);

// "step_00001200.h5"
std::string checkpoint_file_name(int64_t step);
// Full path of the newest checkpoint (highest step_<N>.h5) in `dir`; "" when there is none or the
// directory does not exist. Unfinished `.tmp` files are ignored.
std::string latest_checkpoint(const std::string& dir);
// The finished checkpoints in `dir` as (step, path), newest first; none when `dir` does not exist.
std::vector<std::pair<int64_t, std::string>> checkpoints_in(const std::string& dir);
// Deletes all but the `keep` newest checkpoints in `dir` (keep >= 0).
void prune_checkpoints(const std::string& dir, int keep);

// One line per parameter, "name shape offset", in registration order: stored with each checkpoint
// so that a restart with a different network is refused instead of loading garbage.
std::string parameter_layout(const ParameterRegistry& registry);
// Throws UserError naming `path` and the first differing line when the layouts differ.
void check_parameter_layout(const std::string& expected, const std::string& stored, const std::string& path);

}  // namespace pdegen

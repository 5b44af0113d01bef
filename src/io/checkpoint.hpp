// Checkpoints: everything a run needs to continue bit for bit, in one HDF5 file per save,
// `<output.dir>/checkpoints/step_<N>.h5` (N zero-padded to 8 digits).
//
// Written by one rank with the serial driver to `<path>.tmp`, flushed, then renamed: a file under
// the final name is always complete. Tensors are stored unconverted (fp32 as IEEE fp32, ...), so a
// round trip is bit-exact; every dataset carries a Fletcher-32 checksum and the file format's
// metadata checksums are on, so a damaged file is reported instead of silently read.
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
  static constexpr int current_format_version = 1;
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

// Writes `path` atomically (creating its directory). Tensors must be on the host; they are stored
// in logical (plain) order.
void write_checkpoint(const std::string& path, const CheckpointData& data);
// Throws UserError naming the file when it is missing, truncated, damaged, not a pdegen
// checkpoint, or of another format version.
CheckpointData read_checkpoint(const std::string& path);

// "step_00001200.h5"
std::string checkpoint_file_name(int64_t step);
// Full path of the newest checkpoint (highest step_<N>.h5) in `dir`; "" when there is none or the
// directory does not exist. Unfinished `.tmp` files are ignored.
std::string latest_checkpoint(const std::string& dir);
// Deletes all but the `keep` newest checkpoints in `dir` (keep >= 0).
void prune_checkpoints(const std::string& dir, int keep);

// One line per parameter, "name shape offset", in registration order: stored with each checkpoint
// so that a restart with a different network is refused instead of loading garbage.
std::string parameter_layout(const ParameterRegistry& registry);
// Throws UserError naming `path` and the first differing line when the layouts differ.
void check_parameter_layout(const std::string& expected, const std::string& stored, const std::string& path);

}  // namespace pdegen

// What the two writers of the fields-file layout (fields_file.hpp: whole samples per rank;
// tiled_fields_file.hpp: boxes of samples from any rank) share: the parallel file access, rank 0's
// finishing step (attributes, XDMF views, publication), the disk-space check made before a file is
// begun, and the ranks' agreement on a failure so that all of them throw and none waits.
#pragma once

#include <hdf5.h>
#include <mpi.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "io/fields_file.hpp"
#include "io/hdf5_util.hpp"

namespace pdegen::fields {

// [A-Za-z0-9_.-]+: field names become HDF5 paths and XML attributes.
bool valid_field_name(const std::string& name);

int comm_rank(MPI_Comm comm);
// Rank 0's string on every rank.
std::string broadcast_string(MPI_Comm comm, std::string text);
// Throws on every rank when any rank has a non-empty `problem`, so that no rank goes on into a
// collective call the others will never make.
void agree_or_throw(MPI_Comm comm, const std::string& problem, const char* what);

// MPI-IO file access over `comm` with collective metadata writes; `info` carries MPI-IO hints.
h5::PropertyList parallel_fapl(MPI_Comm comm, MPI_Info info = MPI_INFO_NULL);
// Dataset creation for data that is written in full: allocated at once, never filled.
h5::PropertyList unfilled_dcpl();

// On rank 0 (others return ""): why `bytes` would not fit next to `path`, or "".
std::string space_problem(MPI_Comm comm, const std::string& path, uint64_t bytes);

// The XDMF next to `path` (its extension replaced by .xdmf).
std::string xdmf_path_of(const std::string& path);

// Rank 0, once the parallel file `tmp` (holding /fields/<name> [N, grid...] and /sample_index) is
// closed: the root attributes and the XDMF views of the first `samples` samples, then publishes it
// as `path` and writes its XDMF. `grid`: nodes per axis, slowest first.
void finish_on_root(const std::string& tmp, const std::string& path, const FieldsMetadata& metadata,
                    const std::vector<std::string>& names, int64_t samples, const std::vector<hsize_t>& grid);

// Collective: runs `write_data` (every rank), then `finish` (rank 0), and throws IoError naming
// `path` on every rank if either failed anywhere, after removing `tmp`.
void write_then_finish(MPI_Comm comm, const std::string& path, const std::string& tmp,
                       const std::function<void()>& write_data, const std::function<void()>& finish);

}  // namespace pdegen::fields

// The pieces both fields-file writers share (see fields_common.hpp).
#include "io/fields_common.hpp"

#include <fmt/format.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <pdegen/build_info.hpp>

#include "core/error.hpp"
#include "io/atomic_file.hpp"
#include "io/xdmf.hpp"

namespace pdegen::fields {

bool valid_field_name(const std::string& name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  });
}

int comm_rank(MPI_Comm comm) {
  int rank = 0;
  MPI_CHECK(MPI_Comm_rank(comm, &rank));
  return rank;
}

std::string broadcast_string(MPI_Comm comm, std::string text) {
  int64_t size = static_cast<int64_t>(text.size());
  MPI_CHECK(MPI_Bcast(&size, 1, MPI_INT64_T, 0, comm));
  text.resize(static_cast<size_t>(size));
  if (size > 0) MPI_CHECK(MPI_Bcast(text.data(), static_cast<int>(size), MPI_CHAR, 0, comm));
  return text;
}

void agree_or_throw(MPI_Comm comm, const std::string& problem, const char* what) {
  int bad = problem.empty() ? 0 : 1, any_bad = 0;
  MPI_CHECK(MPI_Allreduce(&bad, &any_bad, 1, MPI_INT, MPI_MAX, comm));
  if (!any_bad) return;
  if (bad) PDEGEN_THROW("{}: {}", what, problem);
  PDEGEN_THROW("{}: another rank reported a problem (see its message)", what);
}

h5::PropertyList parallel_fapl(MPI_Comm comm, MPI_Info info) {
  h5::PropertyList fapl = h5::make_plist(H5P_FILE_ACCESS);
  H5_CHECK(H5Pset_fapl_mpio(fapl, comm, info));
  H5_CHECK(H5Pset_file_locking(fapl, 1, 1));
  // Metadata written once by collective operations instead of by every rank independently.
  H5_CHECK(H5Pset_coll_metadata_write(fapl, 1));
  return fapl;
}

h5::PropertyList unfilled_dcpl() {
  // Every element is written: skip HDF5's fill pass over the whole file.
  h5::PropertyList dcpl = h5::make_plist(H5P_DATASET_CREATE);
  H5_CHECK(H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER));
  H5_CHECK(H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY));
  return dcpl;
}

std::string space_problem(MPI_Comm comm, const std::string& path, uint64_t bytes) {
  if (comm_rank(comm) != 0) return {};
  bytes += uint64_t{1} << 20;  // metadata, XDMF views
  const std::filesystem::path dir = std::filesystem::absolute(path).parent_path();
  struct statvfs fs {};
  if (statvfs(dir.c_str(), &fs) != 0) return {};
  const uint64_t available = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
  if (available >= bytes) return {};
  return fmt::format("it needs {:.1f} MiB, {} has {:.1f} MiB free (No space left on device)",
                     static_cast<double>(bytes) / (1 << 20), dir.string(),
                     static_cast<double>(available) / (1 << 20));
}

std::string xdmf_path_of(const std::string& path) {
  return std::filesystem::path(path).replace_extension(".xdmf").string();
}

void finish_on_root(const std::string& tmp, const std::string& path, const FieldsMetadata& metadata,
                    const std::vector<std::string>& names, int64_t samples,
                    const std::vector<hsize_t>& grid) {
  UniformGrid g;
  for (auto it = grid.rbegin(); it != grid.rend(); ++it) g.nodes.push_back(static_cast<int64_t>(*it));
  g.origin = metadata.origin;
  g.spacing = metadata.spacing;

  h5::PropertyList fapl = h5::serial_fapl();
  h5::File file = h5::open_file(tmp, H5F_ACC_RDWR, fapl);
  h5::write_string_attribute(file, "pde", metadata.pde);
  h5::write_doubles_attribute(file, "spacing", metadata.spacing);
  h5::write_doubles_attribute(file, "origin", metadata.origin);
  h5::write_int64s_attribute(file, "resolution", g.nodes);
  h5::write_string_attribute(file, "deck", metadata.deck_yaml);
  h5::write_string_attribute(file, "pdegen_version",
                             fmt::format("{} (git {})", build::version, build::git_hash));
  create_xdmf_views(file, names, samples, g);
  auto sample_index = h5::read_dataset_as<int64_t>(file, "/sample_index", H5T_NATIVE_INT64);
  sample_index.resize(std::min(sample_index.size(), static_cast<size_t>(samples)));
  file.close();

  publish_file(tmp, path);
  write_xdmf(xdmf_path_of(path), std::filesystem::path(path).filename().string(), g, names, sample_index);
}

namespace {

// What `body` threw, or "" when it returned.
std::string failure_of(const std::function<void()>& body) {
  try {
    body();
  } catch (const std::exception& e) {
    return e.what();
  }
  return {};
}

// The system's reason inside an HDF5 or MPI-IO error stack ("No space left on device"), else all of
// it: the stack is long, the reason is what the user acts on.
std::string reason_of(const std::string& failure) {
  for (int err : {ENOSPC, EDQUOT, EFBIG, EROFS, EACCES, EIO}) {
    const std::string reason = std::strerror(err);
    if (failure.find(reason) != std::string::npos) return reason;
  }
  return failure;
}

}  // namespace

void write_then_finish(MPI_Comm comm, const std::string& path, const std::string& tmp,
                       const std::function<void()>& write_data, const std::function<void()>& finish) {
  const bool root = comm_rank(comm) == 0;
  std::string failure = failure_of(write_data);
  int failed = failure.empty() ? 0 : 1, any_failed = 0;
  MPI_CHECK(MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, comm));
  // Rank 0's part can fail on its own (disk full, permissions): tell everyone, so all ranks throw.
  if (!any_failed && root) failure = failure_of(finish);
  if (!any_failed) failure = broadcast_string(comm, failure);
  if (failure.empty() && !any_failed) return;
  if (root) std::remove(tmp.c_str());
  if (failure.empty())
    throw IoError(fmt::format("cannot write '{}': another rank failed (see its message)", path));
  throw IoError(fmt::format("cannot write '{}': {}", path, reason_of(failure)));
}

}  // namespace pdegen::fields

// fields.h5: collective MPI-IO writes of each rank's samples, then rank 0 finishes and publishes.
#include "io/fields_file.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "core/error.hpp"
#include "core/watchdog.hpp"
#include "io/atomic_file.hpp"
#include "io/fields_common.hpp"
#include "io/hdf5_util.hpp"

namespace pdegen {

namespace {

// Spatial extents of a [count, 1, (Nz,) Ny, Nx] tensor, slowest first.
std::vector<hsize_t> spatial_dims(const Tensor& t) {
  std::vector<hsize_t> dims;
  for (int i = 2; i < t.rank(); ++i) dims.push_back(static_cast<hsize_t>(t.dim(i)));
  return dims;
}

// Rows [first, first + count) of an [N, ...] dataset, written collectively (count may be 0).
void write_rows(hid_t dataset, hid_t mem_type, int64_t first, int64_t count, const void* data, hid_t dxpl) {
  h5::Dataspace file_space(H5_CHECK(H5Dget_space(dataset)));
  const int rank = H5_CHECK(H5Sget_simple_extent_ndims(file_space));
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  H5_CHECK(H5Sget_simple_extent_dims(file_space, dims.data(), nullptr));
  hsize_t row = 1;
  for (size_t i = 1; i < dims.size(); ++i) row *= dims[i];
  const hsize_t elements = static_cast<hsize_t>(count) * row;
  // A rank with nothing to write still takes part in the collective call, with empty selections.
  const hsize_t mem_extent = std::max<hsize_t>(elements, 1);
  h5::Dataspace mem_space(H5_CHECK(H5Screate_simple(1, &mem_extent, nullptr)));
  float dummy = 0;
  if (count == 0) {
    H5_CHECK(H5Sselect_none(file_space));
    H5_CHECK(H5Sselect_none(mem_space));
    data = &dummy;
  } else {
    std::vector<hsize_t> start(dims.size(), 0), extent = dims;
    start[0] = static_cast<hsize_t>(first);
    extent[0] = static_cast<hsize_t>(count);
    H5_CHECK(H5Sselect_hyperslab(file_space, H5S_SELECT_SET, start.data(), nullptr, extent.data(), nullptr));
  }
  H5_CHECK(H5Dwrite(dataset, mem_type, mem_space, file_space, dxpl, data));
}

}  // namespace

FieldsWriter::FieldsWriter(std::string path, FieldsMetadata metadata, MPI_Comm comm, int64_t total_samples,
                           int64_t first, int64_t last)
    : path_(std::move(path)),
      metadata_(std::move(metadata)),
      comm_(comm),
      total_(total_samples),
      first_(first),
      last_(last) {}

std::string FieldsWriter::xdmf_path() const { return fields::xdmf_path_of(path_); }

void FieldsWriter::add_field(const std::string& name, const Tensor& samples) {
  PDEGEN_CHECK(fields::valid_field_name(name), "field name '{}' is not [A-Za-z0-9_.-]+", name);
  for (const auto& [existing, t] : fields_) PDEGEN_CHECK(existing != name, "field '{}' added twice", name);
  PDEGEN_CHECK(samples.device() == Device::cpu, "field '{}' must be on the host", name);
  PDEGEN_CHECK(samples.rank() == 4 || samples.rank() == 5,
               "field '{}' must be [samples, 1, (Nz,) Ny, Nx], got {}", name, samples.shape().str());
  PDEGEN_CHECK(samples.dim(1) == 1, "field '{}' must have one channel, got {}", name, samples.dim(1));
  PDEGEN_CHECK(samples.dtype() == DType::f32 || samples.dtype() == DType::f64,
               "field '{}' must be fp32 or fp64, got {}", name, dtype_name(samples.dtype()));
  Tensor plain = to_plain(samples);
  if (plain.dtype() != DType::f32) plain = to_dtype(plain, DType::f32);
  fields_.emplace_back(name, plain);
}

void FieldsWriter::set_sample_index(std::vector<int64_t> global_indices) {
  sample_index_ = std::move(global_indices);
  have_sample_index_ = true;
}

void FieldsWriter::validate_collectively() const {
  int initialized = 0;
  MPI_Initialized(&initialized);
  PDEGEN_CHECK(initialized, "FieldsWriter needs MPI to be initialised");
  int ranks = 1;
  MPI_CHECK(MPI_Comm_size(comm_, &ranks));

  // What this rank can see wrong on its own.
  std::string problem;
  const int64_t count = last_ - first_;
  if (first_ < 0 || first_ > last_ || last_ > total_) {
    problem = fmt::format("sample range [{}, {}) is not inside [0, {})", first_, last_, total_);
  } else if (fields_.empty()) {
    problem = "no fields were added";
  } else if (!have_sample_index_ || static_cast<int64_t>(sample_index_.size()) != count) {
    problem = fmt::format("{} sample indices for {} samples", sample_index_.size(), count);
  } else {
    const std::vector<hsize_t> dims = spatial_dims(fields_[0].second);
    if (metadata_.origin.size() != dims.size() || metadata_.spacing.size() != dims.size())
      problem = fmt::format("fields are {}D but origin has {} and spacing {} entries", dims.size(),
                            metadata_.origin.size(), metadata_.spacing.size());
    for (const auto& [name, t] : fields_) {
      if (t.dim(0) != count)
        problem = fmt::format("field '{}' holds {} samples, the range [{}, {}) has {}", name, t.dim(0),
                              first_, last_, count);
      else if (spatial_dims(t) != dims)
        problem = fmt::format("field '{}' is {}, field '{}' is {}", name, t.shape().str(), fields_[0].first,
                              fields_[0].second.shape().str());
    }
  }
  fields::agree_or_throw(comm_, problem, "fields file");

  // The ranges must tile [0, N) and every rank must describe the same fields.
  std::vector<int64_t> ranges(static_cast<size_t>(3 * ranks));
  const int64_t mine[3] = {first_, last_, total_};
  MPI_CHECK(MPI_Allgather(mine, 3, MPI_INT64_T, ranges.data(), 3, MPI_INT64_T, comm_));
  std::vector<std::pair<int64_t, int64_t>> sorted;
  for (int r = 0; r < ranks; ++r) {
    const size_t i = static_cast<size_t>(3 * r);
    if (ranges[i + 2] != total_)
      problem = fmt::format("rank {} says {} samples, this rank {}", r, ranges[i + 2], total_);
    if (ranges[i + 1] > ranges[i]) sorted.emplace_back(ranges[i], ranges[i + 1]);
  }
  std::sort(sorted.begin(), sorted.end());
  int64_t covered = 0;
  for (const auto& [a, b] : sorted) {
    if (a != covered) problem = fmt::format("sample ranges leave a gap or overlap at sample {}", covered);
    covered = b;
  }
  if (covered != total_) problem = fmt::format("sample ranges cover [0, {}) of [0, {})", covered, total_);

  std::string signature = fmt::format("{}D", spatial_dims(fields_[0].second).size());
  for (const auto& [name, t] : fields_)
    signature += fmt::format(" {}{}", name, fmt::join(spatial_dims(t), "x"));
  const std::string root_signature = fields::broadcast_string(comm_, signature);
  if (problem.empty() && root_signature != signature)
    problem = fmt::format("this rank's fields ({}) differ from rank 0's ({})", signature, root_signature);
  fields::agree_or_throw(comm_, problem, "fields file");
}

void FieldsWriter::write_collective_data(const std::string& tmp) const {
  h5::PropertyList fapl = fields::parallel_fapl(comm_);
  H5_CHECK(H5Pset_all_coll_metadata_ops(fapl, 1));
  h5::File file = h5::create_file(tmp, fapl);
  h5::PropertyList dxpl = h5::make_plist(H5P_DATASET_XFER);
  H5_CHECK(H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE));
  h5::PropertyList dcpl = fields::unfilled_dcpl();

  const int64_t count = last_ - first_;
  for (const auto& [name, t] : fields_) {
    std::vector<hsize_t> dims{static_cast<hsize_t>(total_)};
    for (hsize_t e : spatial_dims(t)) dims.push_back(e);
    h5::Dataset d = h5::create_dataset(file, "/fields/" + name, H5T_IEEE_F32LE, dims, dcpl);
    write_rows(d, H5T_NATIVE_FLOAT, first_, count, t.raw(), dxpl);
  }
  h5::Dataset index =
      h5::create_dataset(file, "/sample_index", H5T_STD_I64LE, {static_cast<hsize_t>(total_)}, dcpl);
  write_rows(index, H5T_NATIVE_INT64, first_, count, sample_index_.data(), dxpl);
  index.close();
  file.close();
}

void FieldsWriter::finish(const std::string& tmp) const {
  std::vector<std::string> names;
  for (const auto& [name, t] : fields_) names.push_back(name);
  fields::finish_on_root(tmp, path_, metadata_, names, total_, spatial_dims(fields_[0].second));
}

void FieldsWriter::write() {
  const watchdog::Wait wait("a parallel write of a fields file");
  validate_collectively();
  uint64_t bytes = 0;
  for (const auto& [name, t] : fields_)
    bytes +=
        static_cast<uint64_t>(total_) * static_cast<uint64_t>(t.numel() / std::max<int64_t>(1, t.dim(0))) * 4;
  // Parallel HDF5 cannot recover from a write that fails on some ranks: their collective closes part
  // ways and wait for each other forever. So a file that cannot fit is refused before it is begun.
  const std::string space = fields::broadcast_string(comm_, fields::space_problem(comm_, path_, bytes));
  if (!space.empty()) throw IoError(fmt::format("cannot write '{}': {}", path_, space));
  const std::string tmp = temporary_path(path_);
  fields::write_then_finish(
      comm_, path_, tmp, [&] { write_collective_data(tmp); }, [&] { finish(tmp); });
}

}  // namespace pdegen

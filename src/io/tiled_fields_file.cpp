// The fields file written box by box (see tiled_fields_file.hpp).
#include "io/tiled_fields_file.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "core/error.hpp"
#include "core/watchdog.hpp"
#include "io/atomic_file.hpp"
#include "io/fields_common.hpp"

namespace pdegen {

namespace {

std::vector<hsize_t> as_hsize(const std::vector<int64_t>& v) { return {v.begin(), v.end()}; }

// MPI-IO hints of the file: no data sieving for writes (see the header).
struct WriteHints {
  MPI_Info info = MPI_INFO_NULL;
  WriteHints() {
    MPI_CHECK(MPI_Info_create(&info));
    MPI_CHECK(MPI_Info_set(info, "romio_ds_write", "disable"));
  }
  ~WriteHints() { MPI_Info_free(&info); }
  WriteHints(const WriteHints&) = delete;
  WriteHints& operator=(const WriteHints&) = delete;
};

}  // namespace

TiledFieldsWriter::TiledFieldsWriter(std::string path, FieldsMetadata metadata, MPI_Comm comm,
                                     std::vector<int64_t> grid, std::vector<std::string> names,
                                     const std::vector<int64_t>& sample_index, FieldsLayout layout)
    : path_(std::move(path)),
      tmp_(temporary_path(path_)),
      metadata_(std::move(metadata)),
      comm_(comm),
      grid_(std::move(grid)),
      names_(std::move(names)),
      samples_(static_cast<int64_t>(sample_index.size())),
      layout_(layout) {
  PDEGEN_CHECK(grid_.size() == 2 || grid_.size() == 3, "a fields file holds 2D or 3D grids, got {} axes",
               grid_.size());
  PDEGEN_CHECK(metadata_.origin.size() == grid_.size() && metadata_.spacing.size() == grid_.size(),
               "the grid is {}D but origin has {} and spacing {} entries", grid_.size(),
               metadata_.origin.size(), metadata_.spacing.size());
  PDEGEN_CHECK(!names_.empty(), "a fields file without fields");
  for (const std::string& name : names_)
    PDEGEN_CHECK(fields::valid_field_name(name), "field name '{}' is not [A-Za-z0-9_.-]+", name);
  const watchdog::Wait wait("creating a parallel fields file");
  uint64_t bytes = static_cast<uint64_t>(samples_) * names_.size() * 4;
  for (int64_t n : grid_) bytes *= static_cast<uint64_t>(n);
  const std::string space = fields::broadcast_string(comm_, fields::space_problem(comm_, path_, bytes));
  if (!space.empty()) throw IoError(fmt::format("cannot write '{}': {}", path_, space));
  std::string failure;
  try {
    create(sample_index);
  } catch (const std::exception& e) {
    failure = e.what();
  }
  fields::agree_or_throw(comm_, failure, fmt::format("cannot create '{}'", tmp_).c_str());
}

void TiledFieldsWriter::create(const std::vector<int64_t>& sample_index) {
  const WriteHints hints;
  h5::PropertyList fapl = fields::parallel_fapl(comm_, hints.info);
  file_ = h5::create_file(tmp_, fapl);
  h5::PropertyList dcpl = fields::unfilled_dcpl();
  std::vector<hsize_t> dims{static_cast<hsize_t>(samples_)};
  for (int64_t n : grid_) dims.push_back(static_cast<hsize_t>(n));
  h5::PropertyList field_dcpl = fields::unfilled_dcpl();
  if (layout_.chunk_per_sample && samples_ > 0) {
    std::vector<hsize_t> chunk = dims;
    chunk[0] = 1;
    H5_CHECK(H5Pset_chunk(field_dcpl, static_cast<int>(chunk.size()), chunk.data()));
  }
  for (const std::string& name : names_)
    datasets_.push_back(h5::create_dataset(file_, "/fields/" + name, H5T_IEEE_F32LE, dims, field_dcpl));
  dxpl_ = h5::make_plist(H5P_DATASET_XFER);
  H5_CHECK(H5Pset_dxpl_mpio(dxpl_, H5FD_MPIO_INDEPENDENT));
  h5::Dataset index =
      h5::create_dataset(file_, "/sample_index", H5T_STD_I64LE, {static_cast<hsize_t>(samples_)}, dcpl);
  if (fields::comm_rank(comm_) == 0 && samples_ > 0)
    H5_CHECK(H5Dwrite(index, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, dxpl_, sample_index.data()));
}

TiledFieldsWriter::~TiledFieldsWriter() {
  if (finished_) return;
  for (h5::Dataset& d : datasets_) d.release();
  dxpl_.release();
  file_.release();
}

std::string TiledFieldsWriter::xdmf_path() const { return fields::xdmf_path_of(path_); }

hid_t TiledFieldsWriter::dataset(const std::string& name) const {
  const auto it = std::find(names_.begin(), names_.end(), name);
  PDEGEN_CHECK(it != names_.end(), "'{}' has no field '{}'", path_, name);
  PDEGEN_CHECK(!finished_, "'{}' is already finished", path_);
  return datasets_[static_cast<size_t>(it - names_.begin())];
}

std::pair<h5::Dataspace, h5::Dataspace> TiledFieldsWriter::spaces(hid_t dataset, int64_t sample,
                                                                  const GridBox& box) const {
  PDEGEN_CHECK(sample >= 0 && sample < samples_ && box.dims() == static_cast<int>(grid_.size()),
               "box of sample {} with {} axes in a file of {} samples on a {}D grid", sample, box.dims(),
               samples_, grid_.size());
  for (size_t a = 0; a < grid_.size(); ++a)
    PDEGEN_CHECK(box.first[a] >= 0 && box.count[a] >= 1 && box.first[a] + box.count[a] <= grid_[a],
                 "box axis {}: nodes [{}, {}) outside [0, {})", a, box.first[a], box.first[a] + box.count[a],
                 grid_[a]);
  h5::Dataspace file_space(H5_CHECK(H5Dget_space(dataset)));
  std::vector<hsize_t> start{static_cast<hsize_t>(sample)}, count{1};
  for (hsize_t s : as_hsize(box.first)) start.push_back(s);
  for (hsize_t c : as_hsize(box.count)) count.push_back(c);
  H5_CHECK(H5Sselect_hyperslab(file_space, H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr));
  const hsize_t elements = static_cast<hsize_t>(box.numel());
  h5::Dataspace mem_space(H5_CHECK(H5Screate_simple(1, &elements, nullptr)));
  return {std::move(file_space), std::move(mem_space)};
}

void TiledFieldsWriter::write_box(const std::string& name, int64_t sample, const GridBox& box,
                                  const Tensor& values) {
  const hid_t d = dataset(name);
  PDEGEN_CHECK(values.device() == Device::cpu && values.is_plain() && values.dtype() == DType::f32 &&
                   values.numel() == box.numel(),
               "field '{}': a box of {} nodes takes plain fp32 host values, got {}", name, box.numel(),
               values.describe());
  const auto [file_space, mem_space] = spaces(d, sample, box);
  if (H5Dwrite(d, H5T_NATIVE_FLOAT, mem_space, file_space, dxpl_, values.raw()) < 0)
    throw IoError(
        fmt::format("cannot write '{}': field '{}' sample {}: {}", path_, name, sample, h5::error_stack()));
}

Tensor TiledFieldsWriter::read_box(const std::string& name, int64_t sample, const GridBox& box) const {
  const hid_t d = dataset(name);
  Shape shape{1, 1};
  for (int64_t c : box.count) shape.push_back(c);
  Tensor out = Tensor::empty(shape);
  const auto [file_space, mem_space] = spaces(d, sample, box);
  H5_CHECK(H5Dread(d, H5T_NATIVE_FLOAT, mem_space, file_space, dxpl_, out.raw()));
  return out;
}

void TiledFieldsWriter::flush() {
  const watchdog::Wait wait("flushing a parallel fields file");
  // MPI-IO's rule for reading what another process wrote: sync, barrier, sync.
  H5_CHECK(H5Fflush(file_, H5F_SCOPE_GLOBAL));
  MPI_CHECK(MPI_Barrier(comm_));
  H5_CHECK(H5Fflush(file_, H5F_SCOPE_GLOBAL));
}

void TiledFieldsWriter::finish() {
  const watchdog::Wait wait("closing a parallel fields file");
  finished_ = true;
  auto close = [&] {
    for (h5::Dataset& d : datasets_) d.close();
    dxpl_.close();
    file_.close();
  };
  const int64_t views = layout_.xdmf_samples < 0 ? samples_ : std::min(samples_, layout_.xdmf_samples);
  auto publish = [&] { fields::finish_on_root(tmp_, path_, metadata_, names_, views, as_hsize(grid_)); };
  fields::write_then_finish(comm_, path_, tmp_, close, publish);
}

}  // namespace pdegen

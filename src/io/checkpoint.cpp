// Checkpoint files: serial HDF5, checksummed, written under a temporary name and renamed.
#include "io/checkpoint.hpp"

#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <pdegen/build_info.hpp>
#include <sstream>
#include <system_error>

#include "core/error.hpp"
#include "core/parameter.hpp"
#include "io/atomic_file.hpp"
#include "io/hdf5_util.hpp"

namespace fs = std::filesystem;

namespace pdegen {

namespace {

constexpr hsize_t max_chunk_elements = hsize_t{1} << 20;

struct StoredType {
  hid_t file, memory;
};

StoredType stored_type(DType t) {
  switch (t) {
    case DType::f32:
      return {H5T_IEEE_F32LE, H5T_NATIVE_FLOAT};
    case DType::f64:
      return {H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE};
    case DType::f16:
    case DType::bf16:  // bit patterns, kept as they are
      return {H5T_STD_U16LE, H5T_NATIVE_UINT16};
  }
  PDEGEN_THROW("unknown dtype {}", static_cast<int>(t));
}

DType parse_dtype(const std::string& name) {
  for (DType t : {DType::f32, DType::f64, DType::f16, DType::bf16})
    if (dtype_name(t) == name) return t;
  PDEGEN_THROW("unknown dtype '{}' in checkpoint", name);
}

// Groups whose members come back in the order they were written.
h5::Group create_ordered_group(hid_t file, const std::string& name) {
  h5::PropertyList gcpl = h5::make_plist(H5P_GROUP_CREATE);
  H5_CHECK(H5Pset_link_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED));
  H5_CHECK(H5Pset_attr_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED));
  return h5::create_group(file, name, gcpl);
}

void check_member_name(const std::string& name) {
  PDEGEN_CHECK(!name.empty() && name != "." && name.find('/') == std::string::npos,
               "checkpoint entry name '{}' must be non-empty and contain no '/'", name);
}

// A tensor as a 1-D dataset in logical order, with its shape and dtype as attributes.
void write_tensor(hid_t loc, const std::string& name, const Tensor& t) {
  if (!t.defined()) {
    h5::Dataset d = h5::create_dataset(loc, name, H5T_IEEE_F32LE, {0});
    h5::write_string_attribute(d, "dtype", "undefined");
    return;
  }
  PDEGEN_CHECK(t.device() == Device::cpu, "checkpoint tensor '{}' must be on the host", name);
  const Tensor plain = to_plain(t);
  const StoredType type = stored_type(plain.dtype());
  const hsize_t n = static_cast<hsize_t>(plain.numel());
  h5::PropertyList dcpl = h5::make_plist(H5P_DATASET_CREATE);
  if (n > 0) {  // checksums need chunked storage
    const hsize_t chunk = std::min(n, max_chunk_elements);
    H5_CHECK(H5Pset_chunk(dcpl, 1, &chunk));
    H5_CHECK(H5Pset_fletcher32(dcpl));
  }
  h5::Dataset d = h5::write_dataset(loc, name, type.file, type.memory, {n}, plain.raw(), dcpl);
  h5::write_int64s_attribute(d, "shape", std::vector<int64_t>(plain.shape().begin(), plain.shape().end()));
  h5::write_string_attribute(d, "dtype", std::string(dtype_name(plain.dtype())));
}

Tensor read_tensor(hid_t loc, const std::string& name) {
  h5::Dataset d = h5::open_dataset(loc, name);
  const std::string dtype = h5::read_string_attribute(d, "dtype");
  if (dtype == "undefined") return Tensor();
  const DType t = parse_dtype(dtype);
  const std::vector<int64_t> extents = h5::read_int64s_attribute(d, "shape");
  const Shape shape(extents.begin(), extents.end());
  const std::vector<hsize_t> dims = h5::dataset_dims(d);
  PDEGEN_CHECK(dims.size() == 1 && static_cast<int64_t>(dims[0]) == shape.numel(),
               "dataset '{}' holds {} values, its shape {} needs {}", name, dims.empty() ? 0 : dims[0],
               shape.str(), shape.numel());
  Tensor out = Tensor::empty(shape, t);
  if (shape.numel() > 0 && H5Dread(d, stored_type(t).memory, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.raw()) < 0)
    h5::fail(__FILE__, __LINE__, fmt::format("H5Dread of dataset '{}'", name));
  return out;
}

void write_named(hid_t file, const std::string& group_name,
                 const std::vector<std::pair<std::string, Tensor>>& tensors) {
  h5::Group group = create_ordered_group(file, group_name);
  for (const auto& [name, t] : tensors) {
    check_member_name(name);
    write_tensor(group, name, t);
  }
}

std::vector<std::pair<std::string, Tensor>> read_named(hid_t file, const std::string& group_name) {
  h5::Group group = h5::open_group(file, group_name);
  H5G_info_t info;
  H5_CHECK(H5Gget_info(group, &info));
  std::vector<std::pair<std::string, Tensor>> out;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t size =
        H5_CHECK(H5Lget_name_by_idx(group, ".", H5_INDEX_CRT_ORDER, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT));
    std::string name(static_cast<size_t>(size) + 1, '\0');
    H5_CHECK(H5Lget_name_by_idx(group, ".", H5_INDEX_CRT_ORDER, H5_ITER_INC, i, name.data(), name.size(),
                                H5P_DEFAULT));
    name.resize(static_cast<size_t>(size));
    out.emplace_back(name, read_tensor(group, name));
  }
  return out;
}

herr_t collect_attribute_name(hid_t, const char* name, const H5A_info_t*, void* names) {
  static_cast<std::vector<std::string>*>(names)->emplace_back(name);
  return 0;
}

std::vector<std::pair<std::string, double>> read_scalars(hid_t file) {
  h5::Group group = h5::open_group(file, "/scalars");
  std::vector<std::string> names;
  hsize_t position = 0;
  H5_CHECK(H5Aiterate2(group, H5_INDEX_CRT_ORDER, H5_ITER_INC, &position, collect_attribute_name, &names));
  std::vector<std::pair<std::string, double>> out;
  for (const std::string& name : names) out.emplace_back(name, h5::read_double_attribute(group, name));
  return out;
}

// The file starts with a text header in HDF5's user block (HDF5 tools skip it): the CRC-32 and
// length of everything after it, so that any damaged byte, attributes and deck included, is found
// before a single value is trusted. `tail -c +513 FILE | python3 -c 'import sys,zlib;
// print(hex(zlib.crc32(sys.stdin.buffer.read())))'` checks a file by hand.
constexpr size_t header_bytes = 512;
constexpr std::string_view header_magic = "pdegen checkpoint\n";
// The core driver's files in memory still have a name, which must not exist on disk: nothing can
// exist under /dev/null.
constexpr const char* image_name = "/dev/null/pdegen-checkpoint-image";

uint32_t crc32_of(const char* data, size_t bytes) {
  uLong crc = crc32_z(0L, Z_NULL, 0);
  return static_cast<uint32_t>(crc32_z(crc, reinterpret_cast<const Bytef*>(data), bytes));
}

void write_contents(hid_t file, const CheckpointData& data) {
  h5::write_int64_attribute(file, "format_version", data.format_version);
  h5::write_int64_attribute(file, "step", data.step);
  h5::write_uint64_attribute(file, "seed", data.seed);
  h5::write_int64_attribute(file, "next_sample", data.next_sample);
  h5::write_string_attribute(file, "deck", data.deck_yaml);
  h5::write_string_attribute(file, "parameter_layout", data.parameter_layout);
  h5::write_string_attribute(file, "pdegen_version",
                             fmt::format("{} (git {})", build::version, build::git_hash));
  write_tensor(file, "/parameters", data.parameters);
  write_named(file, "/optimizer_state", data.optimizer_state);
  write_named(file, "/buffers", data.buffers);
  h5::Group scalars = create_ordered_group(file, "/scalars");
  for (const auto& [name, value] : data.scalars) {
    check_member_name(name);
    PDEGEN_CHECK(!h5::has_attribute(scalars, name), "checkpoint scalar '{}' given twice", name);
    h5::write_double_attribute(scalars, name, value);
  }
}

// The whole file, built in memory (HDF5's core driver, nothing on disk), so that the disk is
// touched once, by write_file_atomically, whose failures leave no HDF5 file half-closed.
std::string file_image(const CheckpointData& data) {
  h5::PropertyList fcpl = h5::make_plist(H5P_FILE_CREATE);
  H5_CHECK(H5Pset_userblock(fcpl, header_bytes));
  h5::PropertyList fapl = h5::make_plist(H5P_FILE_ACCESS);
  H5_CHECK(H5Pset_fapl_core(fapl, size_t{1} << 22, /*backing_store=*/0));
  // The default (oldest) superblock: HDF5 1.12 images of checksummed superblocks of a file still
  // open do not read back. The CRC above covers more than HDF5's own metadata checksums would.
  h5::quiet();
  h5::File file(H5_CHECK(H5Fcreate(image_name, H5F_ACC_TRUNC, fcpl, fapl)));
  write_contents(file, data);
  H5_CHECK(H5Fflush(file, H5F_SCOPE_LOCAL));
  // The image leaves the user block out; its addresses count from the end of it.
  const ssize_t size = H5_CHECK(H5Fget_file_image(file, nullptr, 0));
  std::string image(header_bytes + static_cast<size_t>(size), '\0');
  H5_CHECK(H5Fget_file_image(file, image.data() + header_bytes, static_cast<size_t>(size)));
  file.close();
  const std::string header =
      fmt::format("{}crc32 {:08x}\nbytes {}\n", header_magic,
                  crc32_of(image.data() + header_bytes, static_cast<size_t>(size)), size);
  image.replace(0, header.size(), header);
  return image;
}

// Checks the header's CRC and length against the bytes after it; "" when they match, else why not.
std::string integrity_problem(const std::string& image) {
  if (image.size() < header_bytes || image.compare(0, header_magic.size(), header_magic) != 0)
    return "it has no pdegen checkpoint header";
  unsigned crc = 0;
  unsigned long long bytes = 0;
  if (std::sscanf(image.c_str() + header_magic.size(), "crc32 %8x\nbytes %llu", &crc, &bytes) != 2)
    return "its header is damaged";
  const size_t body = image.size() - header_bytes;
  if (bytes != body)
    return fmt::format("it holds {} bytes after its header, its header says {}", body, bytes);
  if (crc32_of(image.data() + header_bytes, body) != crc) return "its CRC-32 does not match its contents";
  return {};
}

CheckpointData read_contents(hid_t file, const std::string& path) {
  CheckpointData data;
  if (!h5::has_attribute(file, "format_version"))
    throw UserError(
        fmt::format("'{}' is an HDF5 file but not a pdegen checkpoint (no format_version)", path));
  const int64_t version = h5::read_int64_attribute(file, "format_version");
  if (version < 1 || version > CheckpointData::current_format_version)
    throw UserError(fmt::format("checkpoint '{}' has format version {}; this pdegen reads versions 1 to {}",
                                path, version, CheckpointData::current_format_version));
  data.format_version = static_cast<int>(version);
  data.step = h5::read_int64_attribute(file, "step");
  data.seed = h5::read_uint64_attribute(file, "seed");
  data.next_sample = h5::read_int64_attribute(file, "next_sample");
  data.deck_yaml = h5::read_string_attribute(file, "deck");
  data.parameter_layout = h5::read_string_attribute(file, "parameter_layout");
  data.parameters = read_tensor(file, "/parameters");
  data.optimizer_state = read_named(file, "/optimizer_state");
  data.buffers = read_named(file, "/buffers");
  data.scalars = read_scalars(file);
  return data;
}

CheckpointData read_file(const std::string& path) {
  std::string image = read_file_bytes(path);
  const bool has_header = image.compare(0, header_magic.size(), header_magic) == 0;
  if (has_header) {
    const std::string problem = integrity_problem(image);
    if (!problem.empty())
      throw UserError(
          fmt::format("checkpoint '{}' is damaged: {}; use an earlier checkpoint", path, problem));
  }
  h5::PropertyList fapl = h5::make_plist(H5P_FILE_ACCESS);
  H5_CHECK(H5Pset_fapl_core(fapl, size_t{1} << 22, /*backing_store=*/0));
  H5_CHECK(H5Pset_file_image(fapl, image.data(), image.size()));
  h5::quiet();
  h5::File file(H5Fopen(image_name, H5F_ACC_RDONLY, fapl));
  if (!file.valid()) h5::fail(__FILE__, __LINE__, fmt::format("H5Fopen of '{}'", path));
  CheckpointData data = read_contents(file, path);
  file.close();
  // Version 1 files predate the header: their datasets carry Fletcher-32 sums, the rest nothing.
  if (!has_header && data.format_version > 1)
    throw UserError(fmt::format("checkpoint '{}' is damaged: its header is missing", path));
  return data;
}

// Step of a finished checkpoint file name, or -1.
int64_t step_of(const std::string& file_name) {
  constexpr std::string_view prefix = "step_", suffix = ".h5";
  if (!file_name.starts_with(prefix) || !file_name.ends_with(suffix)) return -1;
  const std::string digits =
      file_name.substr(prefix.size(), file_name.size() - prefix.size() - suffix.size());
  if (digits.empty() || digits.size() > 18) return -1;
  if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) return -1;
  return std::stoll(digits);
}

// Finished checkpoints in `dir`, newest first.
std::vector<std::pair<int64_t, fs::path>> list_checkpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, fs::path>> found;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return found;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
    const int64_t step = step_of(entry.path().filename().string());
    if (step >= 0 && entry.is_regular_file()) found.emplace_back(step, entry.path());
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  return found;
}

}  // namespace

void write_checkpoint(const std::string& path, const CheckpointData& data) {
  const fs::path parent = fs::path(path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    fs::create_directories(parent, ec);
    if (ec)
      throw UserError(
          fmt::format("cannot create checkpoint directory '{}': {}", parent.string(), ec.message()));
  }
  const std::string image = file_image(data);
  write_file_atomically(path, image.data(), image.size());
  // Nothing written is trusted unread: the file on disk is read back and its CRC checked.
  const std::string problem = integrity_problem(read_file_bytes(path));
  if (!problem.empty()) {
    std::remove(path.c_str());
    throw IoError(fmt::format("checkpoint '{}' did not read back intact ({}): the file system lost data",
                              path, problem));
  }
}

CheckpointData read_checkpoint(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw UserError(fmt::format("checkpoint '{}' does not exist", path));
  if (!fs::is_regular_file(path, ec)) throw UserError(fmt::format("checkpoint '{}' is not a file", path));
  try {
    return read_file(path);
  } catch (const UserError&) {
    throw;
  } catch (const IoError&) {
    throw;
  } catch (const Error& e) {
    throw UserError(fmt::format(
        "cannot read checkpoint '{}': the file is truncated, damaged or not a pdegen checkpoint ({})", path,
        e.what()));
  }
}

std::string checkpoint_file_name(int64_t step) {
  PDEGEN_CHECK(step >= 0, "negative step {}", step);
  return fmt::format("step_{:08d}.h5", step);
}

std::vector<std::pair<int64_t, std::string>> checkpoints_in(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> out;
  for (const auto& [step, path] : list_checkpoints(dir)) out.emplace_back(step, path.string());
  return out;
}

std::string latest_checkpoint(const std::string& dir) {
  const auto found = list_checkpoints(dir);
  return found.empty() ? std::string() : found.front().second.string();
}

void prune_checkpoints(const std::string& dir, int keep) {
  PDEGEN_CHECK(keep >= 0, "cannot keep {} checkpoints", keep);
  const auto found = list_checkpoints(dir);
  for (size_t i = static_cast<size_t>(keep); i < found.size(); ++i) {
    std::error_code ec;
    fs::remove(found[i].second, ec);
    if (ec) PDEGEN_THROW("cannot delete old checkpoint '{}': {}", found[i].second.string(), ec.message());
  }
}

std::string parameter_layout(const ParameterRegistry& registry) {
  std::string out;
  for (const Parameter& p : registry.params())
    out += fmt::format("{} {} {}\n", p.name, p.shape.str(), p.offset);
  return out;
}

void check_parameter_layout(const std::string& expected, const std::string& stored, const std::string& path) {
  if (expected == stored) return;
  std::istringstream want(expected), have(stored);
  std::string w, h;
  for (int line = 1;; ++line) {
    const bool more_w = static_cast<bool>(std::getline(want, w));
    const bool more_h = static_cast<bool>(std::getline(have, h));
    if (!more_w) w = "(nothing)";
    if (!more_h) h = "(nothing)";
    if (w != h || (!more_w && !more_h))
      throw UserError(fmt::format(
          "checkpoint '{}' was written for another network: parameter {} is '{}' in the checkpoint but "
          "'{}' in this run",
          path, line, h, w));
  }
}

}  // namespace pdegen

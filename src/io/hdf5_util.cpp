// HDF5 plumbing: error-stack capture, handle closing, attribute and dataset helpers.
#include "io/hdf5_util.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <mutex>

namespace pdegen::h5 {

namespace {

herr_t append_frame(unsigned, const H5E_error2_t* e, void* out) {
  auto& text = *static_cast<std::string*>(out);
  char minor[256] = "";
  H5Eget_msg(e->min_num, nullptr, minor, sizeof minor);
  if (!text.empty()) text += "; ";
  text += fmt::format("{}(): {}", e->func_name ? e->func_name : "?", e->desc ? e->desc : "");
  if (minor[0] != '\0') text += fmt::format(" ({})", minor);
  return 0;
}

// Creates missing intermediate groups, so callers can name "/fields/u_pred" directly.
PropertyList intermediate_groups_lcpl() {
  PropertyList lcpl = make_plist(H5P_LINK_CREATE);
  H5_CHECK(H5Pset_create_intermediate_group(lcpl, 1));
  return lcpl;
}

Dataspace make_space(const std::vector<hsize_t>& dims) {
  if (dims.empty()) return Dataspace(H5_CHECK(H5Screate(H5S_SCALAR)));
  return Dataspace(H5_CHECK(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr)));
}

void write_attribute(hid_t obj, const std::string& name, hid_t file_type, hid_t mem_type,
                     const std::vector<hsize_t>& dims, const void* data) {
  quiet();
  if (H5_CHECK(H5Aexists(obj, name.c_str())) > 0) H5_CHECK(H5Adelete(obj, name.c_str()));
  Dataspace space = make_space(dims);
  Attribute attr(H5Acreate2(obj, name.c_str(), file_type, space, H5P_DEFAULT, H5P_DEFAULT));
  if (!attr.valid()) fail(__FILE__, __LINE__, fmt::format("H5Acreate2 of attribute '{}'", name));
  if (H5Awrite(attr, mem_type, data) < 0)
    fail(__FILE__, __LINE__, fmt::format("H5Awrite of attribute '{}'", name));
  attr.close();
}

Attribute open_attribute(hid_t obj, const std::string& name) {
  quiet();
  if (H5_CHECK(H5Aexists(obj, name.c_str())) <= 0) PDEGEN_THROW("HDF5 attribute '{}' is missing", name);
  Attribute attr(H5Aopen(obj, name.c_str(), H5P_DEFAULT));
  if (!attr.valid()) fail(__FILE__, __LINE__, fmt::format("H5Aopen of attribute '{}'", name));
  return attr;
}

hssize_t attribute_size(hid_t attr) {
  Dataspace space(H5_CHECK(H5Aget_space(attr)));
  return H5_CHECK(H5Sget_simple_extent_npoints(space));
}

template <class T>
std::vector<T> read_numbers(hid_t obj, const std::string& name, hid_t mem_type) {
  Attribute attr = open_attribute(obj, name);
  std::vector<T> out(static_cast<size_t>(attribute_size(attr)));
  if (!out.empty() && H5Aread(attr, mem_type, out.data()) < 0)
    fail(__FILE__, __LINE__, fmt::format("H5Aread of attribute '{}'", name));
  return out;
}

template <class T>
T read_number(hid_t obj, const std::string& name, hid_t mem_type) {
  std::vector<T> v = read_numbers<T>(obj, name, mem_type);
  PDEGEN_CHECK(v.size() == 1, "HDF5 attribute '{}' holds {} values, expected one", name, v.size());
  return v[0];
}

}  // namespace

void quiet() {
  static std::once_flag once;
  std::call_once(once, [] { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); });
}

std::string error_stack() {
  std::string text;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, append_frame, &text);
  H5Eclear2(H5E_DEFAULT);
  return text.empty() ? "no HDF5 error stack" : text;
}

void fail(const char* file, int line, const std::string& call) {
  throw_error(file, line, fmt::format("HDF5 call '{}' failed: {}", call, error_stack()));
}

void report_close_failure(hid_t id) noexcept {
  try {
    spdlog::warn("closing HDF5 object {} failed: {}", static_cast<int64_t>(id), error_stack());
  } catch (...) {  // logging must not throw out of a destructor
  }
}

PropertyList make_plist(hid_t cls) {
  quiet();
  return PropertyList(H5_CHECK(H5Pcreate(cls)));
}

PropertyList serial_fapl() {
  PropertyList fapl = make_plist(H5P_FILE_ACCESS);
  H5_CHECK(H5Pset_file_locking(fapl, 1, 1));
  return fapl;
}

File create_file(const std::string& path, hid_t fapl) {
  quiet();
  File f(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl));
  if (!f.valid()) fail(__FILE__, __LINE__, fmt::format("H5Fcreate of '{}'", path));
  return f;
}

File open_file(const std::string& path, unsigned flags, hid_t fapl) {
  quiet();
  File f(H5Fopen(path.c_str(), flags, fapl));
  if (!f.valid()) fail(__FILE__, __LINE__, fmt::format("H5Fopen of '{}'", path));
  return f;
}

Group create_group(hid_t loc, const std::string& name, hid_t gcpl) {
  quiet();
  PropertyList lcpl = intermediate_groups_lcpl();
  Group g(H5Gcreate2(loc, name.c_str(), lcpl, gcpl, H5P_DEFAULT));
  if (!g.valid()) fail(__FILE__, __LINE__, fmt::format("H5Gcreate2 of group '{}'", name));
  return g;
}

Group open_group(hid_t loc, const std::string& name) {
  quiet();
  Group g(H5Gopen2(loc, name.c_str(), H5P_DEFAULT));
  if (!g.valid()) fail(__FILE__, __LINE__, fmt::format("H5Gopen2 of group '{}'", name));
  return g;
}

Dataset open_dataset(hid_t loc, const std::string& name) {
  quiet();
  Dataset d(H5Dopen2(loc, name.c_str(), H5P_DEFAULT));
  if (!d.valid()) fail(__FILE__, __LINE__, fmt::format("H5Dopen2 of dataset '{}'", name));
  return d;
}

bool link_exists(hid_t loc, const std::string& name) {
  quiet();
  // H5Lexists fails, rather than answering false, when an intermediate group is missing: walk
  // the path one link at a time.
  std::string prefix;
  size_t start = name.starts_with('/') ? 1 : 0;
  if (start == 1) prefix = "/";
  while (start <= name.size()) {
    size_t end = name.find('/', start);
    if (end == std::string::npos) end = name.size();
    prefix += name.substr(start, end - start);
    if (H5_CHECK(H5Lexists(loc, prefix.c_str(), H5P_DEFAULT)) <= 0) return false;
    prefix += '/';
    start = end + 1;
  }
  return true;
}

std::vector<hsize_t> dataset_dims(hid_t dataset) {
  Dataspace space(H5_CHECK(H5Dget_space(dataset)));
  const int rank = H5_CHECK(H5Sget_simple_extent_ndims(space));
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  if (rank > 0) H5_CHECK(H5Sget_simple_extent_dims(space, dims.data(), nullptr));
  return dims;
}

Datatype string_type() {
  quiet();
  Datatype t(H5_CHECK(H5Tcopy(H5T_C_S1)));
  H5_CHECK(H5Tset_size(t, H5T_VARIABLE));
  H5_CHECK(H5Tset_cset(t, H5T_CSET_UTF8));
  return t;
}

bool has_attribute(hid_t obj, const std::string& name) {
  quiet();
  return H5_CHECK(H5Aexists(obj, name.c_str())) > 0;
}

void write_string_attribute(hid_t obj, const std::string& name, const std::string& value) {
  Datatype type = string_type();
  const char* text = value.c_str();
  write_attribute(obj, name, type, type, {}, &text);
}

void write_double_attribute(hid_t obj, const std::string& name, double value) {
  write_attribute(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, {}, &value);
}

void write_int64_attribute(hid_t obj, const std::string& name, int64_t value) {
  write_attribute(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, {}, &value);
}

void write_uint64_attribute(hid_t obj, const std::string& name, uint64_t value) {
  write_attribute(obj, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, {}, &value);
}

void write_doubles_attribute(hid_t obj, const std::string& name, const std::vector<double>& values) {
  write_attribute(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, {values.size()}, values.data());
}

void write_int64s_attribute(hid_t obj, const std::string& name, const std::vector<int64_t>& values) {
  write_attribute(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, {values.size()}, values.data());
}

std::string read_string_attribute(hid_t obj, const std::string& name) {
  Attribute attr = open_attribute(obj, name);
  PDEGEN_CHECK(attribute_size(attr) == 1, "HDF5 attribute '{}' is not a single string", name);
  Datatype stored(H5_CHECK(H5Aget_type(attr)));
  PDEGEN_CHECK(H5_CHECK(H5Tget_class(stored)) == H5T_STRING, "HDF5 attribute '{}' is not a string", name);
  if (H5_CHECK(H5Tis_variable_str(stored)) > 0) {
    Datatype type = string_type();
    char* text = nullptr;
    if (H5Aread(attr, type, &text) < 0)
      fail(__FILE__, __LINE__, fmt::format("H5Aread of attribute '{}'", name));
    std::string out = text ? text : "";
    H5free_memory(text);
    return out;
  }
  // Fixed-length strings (as other tools write them): read the bytes, drop the padding.
  const size_t size = H5Tget_size(stored);
  if (size == 0) fail(__FILE__, __LINE__, fmt::format("H5Tget_size of attribute '{}'", name));
  Datatype type(H5_CHECK(H5Tcopy(H5T_C_S1)));
  H5_CHECK(H5Tset_size(type, size));
  std::string out(size, '\0');
  if (H5Aread(attr, type, out.data()) < 0)
    fail(__FILE__, __LINE__, fmt::format("H5Aread of attribute '{}'", name));
  out.resize(out.find('\0') == std::string::npos ? size : out.find('\0'));
  return out;
}

double read_double_attribute(hid_t obj, const std::string& name) {
  return read_number<double>(obj, name, H5T_NATIVE_DOUBLE);
}

int64_t read_int64_attribute(hid_t obj, const std::string& name) {
  return read_number<int64_t>(obj, name, H5T_NATIVE_INT64);
}

uint64_t read_uint64_attribute(hid_t obj, const std::string& name) {
  return read_number<uint64_t>(obj, name, H5T_NATIVE_UINT64);
}

std::vector<double> read_doubles_attribute(hid_t obj, const std::string& name) {
  return read_numbers<double>(obj, name, H5T_NATIVE_DOUBLE);
}

std::vector<int64_t> read_int64s_attribute(hid_t obj, const std::string& name) {
  return read_numbers<int64_t>(obj, name, H5T_NATIVE_INT64);
}

Dataset create_dataset(hid_t loc, const std::string& name, hid_t file_type, const std::vector<hsize_t>& dims,
                       hid_t dcpl) {
  quiet();
  Dataspace space = make_space(dims);
  PropertyList lcpl = intermediate_groups_lcpl();
  Dataset d(H5Dcreate2(loc, name.c_str(), file_type, space, lcpl, dcpl, H5P_DEFAULT));
  if (!d.valid()) fail(__FILE__, __LINE__, fmt::format("H5Dcreate2 of dataset '{}'", name));
  return d;
}

Dataset write_dataset(hid_t loc, const std::string& name, hid_t file_type, hid_t mem_type,
                      const std::vector<hsize_t>& dims, const void* data, hid_t dcpl) {
  Dataset d = create_dataset(loc, name, file_type, dims, dcpl);
  hsize_t n = 1;
  for (hsize_t e : dims) n *= e;
  if (n > 0 && H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    fail(__FILE__, __LINE__, fmt::format("H5Dwrite of dataset '{}'", name));
  return d;
}

void read_dataset(hid_t loc, const std::string& name, hid_t mem_type, void* data) {
  Dataset d = open_dataset(loc, name);
  hsize_t n = 1;
  for (hsize_t e : dataset_dims(d)) n *= e;
  if (n > 0 && H5Dread(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    fail(__FILE__, __LINE__, fmt::format("H5Dread of dataset '{}'", name));
}

}  // namespace pdegen::h5

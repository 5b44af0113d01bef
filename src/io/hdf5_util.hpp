// HDF5 plumbing shared by the fields file and the checkpoints: a checked-call macro that turns a
// failed call into pdegen::Error carrying HDF5's own error stack, move-only handles that close
// what they own, and typed helpers for attributes and whole datasets.
//
// HDF5 prints its error stack to stderr by itself on every failure, including the expected ones
// (probing for an attribute, opening a truncated file); h5::quiet() switches that off once per
// process and H5_CHECK collects the stack into the exception message instead.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/error.hpp"

namespace pdegen::h5 {

// Turns off HDF5's automatic error printing (idempotent; every entry point of io/ calls it).
void quiet();
// The current thread's HDF5 error stack as one line per frame, innermost first; clears it.
std::string error_stack();
// Throws pdegen::Error naming the call (or whatever the caller describes) and HDF5's error stack.
[[noreturn]] void fail(const char* file, int line, const std::string& call);
// Logs a failed close from a destructor (with the error stack) instead of throwing.
void report_close_failure(hid_t id) noexcept;

// A handle (hid_t) closed by `Close` when it goes out of scope. Closing failures are logged, not
// thrown: destructors never throw.
template <herr_t (*Close)(hid_t)>
class Handle {
 public:
  Handle() = default;
  explicit Handle(hid_t id) : id_(id) {}
  ~Handle() { reset(); }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& o) noexcept : id_(o.release()) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = o.release();
    }
    return *this;
  }
  hid_t get() const { return id_; }
  operator hid_t() const { return id_; }  // NOLINT: handles are passed straight to the C API
  bool valid() const { return id_ >= 0; }
  hid_t release() {
    hid_t id = id_;
    id_ = H5I_INVALID_HID;
    return id;
  }
  // Closes now and reports failure (a file's close is where buffered data reaches the disk).
  void close();
  void reset() noexcept;

 private:
  hid_t id_ = H5I_INVALID_HID;
};

using File = Handle<H5Fclose>;
using Group = Handle<H5Gclose>;
using Dataset = Handle<H5Dclose>;
using Dataspace = Handle<H5Sclose>;
using Attribute = Handle<H5Aclose>;
using PropertyList = Handle<H5Pclose>;
using Datatype = Handle<H5Tclose>;

// A property list of the given class (H5P_FILE_ACCESS, H5P_DATASET_CREATE, ...).
PropertyList make_plist(hid_t cls);
// File access for one process (default driver). File locking stays on but is skipped where the
// file system does not support it (Lustre and NFS mounts often don't), instead of failing.
PropertyList serial_fapl();
// Create (truncating) or open `path`; failures name the path.
File create_file(const std::string& path, hid_t fapl = H5P_DEFAULT);
File open_file(const std::string& path, unsigned flags, hid_t fapl = H5P_DEFAULT);
// Creates `name` (a path; missing intermediate groups are created too) with an optional creation
// property list.
Group create_group(hid_t loc, const std::string& name, hid_t gcpl = H5P_DEFAULT);
Group open_group(hid_t loc, const std::string& name);
Dataset open_dataset(hid_t loc, const std::string& name);
bool link_exists(hid_t loc, const std::string& name);
// Extents of a dataset, slowest axis first.
std::vector<hsize_t> dataset_dims(hid_t dataset);

// Variable-length UTF-8 string type (what h5py reads back as str).
Datatype string_type();

// Attributes on a file, group or dataset; writing replaces an existing attribute of that name.
bool has_attribute(hid_t obj, const std::string& name);
void write_string_attribute(hid_t obj, const std::string& name, const std::string& value);
void write_double_attribute(hid_t obj, const std::string& name, double value);
void write_int64_attribute(hid_t obj, const std::string& name, int64_t value);
void write_uint64_attribute(hid_t obj, const std::string& name, uint64_t value);
void write_doubles_attribute(hid_t obj, const std::string& name, const std::vector<double>& values);
void write_int64s_attribute(hid_t obj, const std::string& name, const std::vector<int64_t>& values);
// Readers throw pdegen::Error when the attribute is missing or has another shape.
std::string read_string_attribute(hid_t obj, const std::string& name);
double read_double_attribute(hid_t obj, const std::string& name);
int64_t read_int64_attribute(hid_t obj, const std::string& name);
uint64_t read_uint64_attribute(hid_t obj, const std::string& name);
std::vector<double> read_doubles_attribute(hid_t obj, const std::string& name);
std::vector<int64_t> read_int64s_attribute(hid_t obj, const std::string& name);

// A new dataset (intermediate groups created) whose data the caller writes, or never writes for a
// virtual one.
Dataset create_dataset(hid_t loc, const std::string& name, hid_t file_type, const std::vector<hsize_t>& dims,
                       hid_t dcpl = H5P_DEFAULT);
// Whole datasets. `file_type` is the stored type (e.g. H5T_IEEE_F32LE), `mem_type` the type of
// `data` (e.g. H5T_NATIVE_FLOAT); when they match bit for bit no conversion happens.
Dataset write_dataset(hid_t loc, const std::string& name, hid_t file_type, hid_t mem_type,
                      const std::vector<hsize_t>& dims, const void* data, hid_t dcpl = H5P_DEFAULT);
// Reads all of `name` into `data`, which must hold as many elements as the dataset.
void read_dataset(hid_t loc, const std::string& name, hid_t mem_type, void* data);

template <class T>
std::vector<T> read_dataset_as(hid_t loc, const std::string& name, hid_t mem_type) {
  Dataset d = open_dataset(loc, name);
  hsize_t n = 1;
  for (hsize_t e : dataset_dims(d)) n *= e;
  std::vector<T> out(static_cast<size_t>(n));
  read_dataset(loc, name, mem_type, out.data());
  return out;
}

}  // namespace pdegen::h5

// Checks an HDF5 call (a negative hid_t/herr_t/htri_t is failure) and yields its value:
//   h5::File f(H5_CHECK(H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT)));
#define H5_CHECK(expr)                               \
  ([&]() {                                           \
    auto r_ = (expr);                                \
    if (r_ < 0) [[unlikely]]                         \
      ::pdegen::h5::fail(__FILE__, __LINE__, #expr); \
    return r_;                                       \
  }())

namespace pdegen::h5 {

template <herr_t (*Close)(hid_t)>
void Handle<Close>::close() {
  if (id_ < 0) return;
  hid_t id = release();
  H5_CHECK(Close(id));
}

template <herr_t (*Close)(hid_t)>
void Handle<Close>::reset() noexcept {
  if (id_ < 0) return;
  hid_t id = release();
  if (Close(id) < 0) report_close_failure(id);
}

}  // namespace pdegen::h5

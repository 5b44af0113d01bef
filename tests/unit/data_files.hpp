// Dataset files for the data tests, written with the plain HDF5 C API in every shape a user's file
// may have, well formed or not: sample r's input holds r + i / 1000 at node i, its target -(r + i /
// 1000), so any value read says which sample and node it came from.
#pragma once

#include <hdf5.h>

#include <string>
#include <vector>

#include "io/hdf5_util.hpp"

namespace pdegen::testing {

struct DataFileSpec {
  int64_t samples = 6;
  std::vector<hsize_t> grid{4, 4};
  hid_t type = H5T_IEEE_F32LE;  // the stored type of both fields
  bool chunked = true;
  hsize_t chunk_samples = 1;
  bool deflate = false;
  bool channel_axis = false;  // [N, 1, grid...]
  bool input = true, target = true;
  int64_t target_samples = -1;       // -1: as many as the input
  std::vector<hsize_t> target_grid;  // empty: `grid`
  std::string pde = "poisson2d";     // "" = no attribute
  int64_t first_record = 0;          // the value offset: sample r holds first_record + r
};

inline double data_value(int64_t record, int64_t node) { return static_cast<double>(record) + node / 1000.0; }

inline void write_field(hid_t file, const std::string& name, const DataFileSpec& s, int64_t n,
                        const std::vector<hsize_t>& grid, double sign) {
  std::vector<hsize_t> dims{static_cast<hsize_t>(n)};
  if (s.channel_axis) dims.push_back(1);
  dims.insert(dims.end(), grid.begin(), grid.end());
  hsize_t values = 1;
  for (hsize_t g : grid) values *= g;
  std::vector<double> data(static_cast<size_t>(n) * values);
  for (int64_t r = 0; r < n; ++r)
    for (hsize_t i = 0; i < values; ++i)
      data[static_cast<size_t>(r) * values + i] =
          sign * data_value(s.first_record + r, static_cast<int64_t>(i));
  h5::PropertyList dcpl = h5::make_plist(H5P_DATASET_CREATE);
  if (s.chunked) {
    std::vector<hsize_t> chunk = dims;
    chunk[0] = std::min<hsize_t>(s.chunk_samples, static_cast<hsize_t>(n));
    H5Pset_chunk(dcpl, static_cast<int>(chunk.size()), chunk.data());
    if (s.deflate) H5Pset_deflate(dcpl, 4);
  }
  h5::write_dataset(file, name, s.type, H5T_NATIVE_DOUBLE, dims, data.data(), dcpl);
}

inline void write_data_file(const std::string& path, const DataFileSpec& s) {
  h5::File file = h5::create_file(path);
  if (!s.pde.empty()) h5::write_string_attribute(file, "pde", s.pde);
  if (s.input) write_field(file, "/fields/log_nu", s, s.samples, s.grid, 1.0);
  if (s.target)
    write_field(file, "/fields/u_ref", s, s.target_samples < 0 ? s.samples : s.target_samples,
                s.target_grid.empty() ? s.grid : s.target_grid, -1.0);
  file.close();
}

}  // namespace pdegen::testing

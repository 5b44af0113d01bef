// XDMF for fields.h5, so that ParaView (with its default reader, Xdmf3) and VisIt open the fields
// as a uniform grid with every field per sample and the samples on the time slider.
//
// The fields live in `/fields/<name>` as [N, (Nz,) Ny, Nx]. XDMF could address one sample as a
// HyperSlab data item, but ParaView's default XDMF3 reader silently shows no arrays for those. So
// each (field, sample) also gets an HDF5 *virtual dataset* `/xdmf/<name>/<sample>` of shape
// [(Nz,) Ny, Nx] that maps onto its slab of `/fields/<name>`: the XDMF then references plain
// datasets, and no value is stored twice (HDF5 >= 1.10 reads virtual datasets transparently).
//
// XDMF orders dimensions, origin and spacing slowest first (z, y, x); pdegen's own vectors are
// x first, and the functions below do the reversal.
//
// 2D grids are written as a 3DCoRectMesh with ONE node along z ("1 Ny Nx", origin "0 oy ox",
// spacing "1 dy dx"), not as a 2DCoRectMesh: ParaView 5.11's readers (Xdmf3 and the legacy XDMF
// one alike) put a 2DCoRectMesh's fastest axis along VTK's y and the other along z, i.e. the field
// lies in the y-z plane. With the singleton z axis, x runs to the right and y up, as expected.
// The data items declare "1 Ny Nx" too (same element count as the [Ny, Nx] datasets): with "Ny Nx"
// the legacy reader mis-sizes the arrays.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

namespace pdegen {

struct UniformGrid {
  std::vector<int64_t> nodes;   // nodes per axis, x first (2 or 3 entries)
  std::vector<double> origin;   // x first
  std::vector<double> spacing;  // x first
};

// The virtual dataset of one field of sample `position` (0-based position in the file).
std::string xdmf_view_path(const std::string& field, int64_t position);

// Creates the virtual datasets `/xdmf/<field>/<position>` in an open (serial) file that already
// holds `/fields/<field>` of shape [samples, grid.nodes reversed].
void create_xdmf_views(hid_t file, const std::vector<std::string>& fields, int64_t samples,
                       const UniformGrid& grid);

// The XDMF document: a temporal collection with one 3DCoRectMesh per sample (time = position,
// grid name `sample_<global index>`), node-centred scalar attributes read from `h5_file_name`
// (relative to the .xdmf, so the pair can be moved together), plus the global sample index as a
// grid-centred attribute.
std::string xdmf_text(const std::string& h5_file_name, const UniformGrid& grid,
                      const std::vector<std::string>& fields, const std::vector<int64_t>& sample_index);

// Writes xdmf_text to `<path>.tmp` and renames it to `path`.
void write_xdmf(const std::string& path, const std::string& h5_file_name, const UniformGrid& grid,
                const std::vector<std::string>& fields, const std::vector<int64_t>& sample_index);

}  // namespace pdegen

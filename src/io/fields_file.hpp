// fields.h5 (+ fields.xdmf): the fields of N samples, written collectively by all ranks.
//
// Layout of the file:
//   /fields/<name>   fp32 [N, Ny, Nx] (3D: [N, Nz, Ny, Nx]), x fastest, one per field
//   /sample_index    int64 [N], the global sample index of each row
//   /xdmf/<name>/<e> virtual [Ny, Nx] views of sample e for ParaView's XDMF3 reader (see xdmf.hpp)
//   root attributes: pde, spacing and origin (double, x first), resolution (int64 nodes per axis,
//   x first), deck (the resolved deck YAML), pdegen_version
//
// Each rank holds a contiguous range [n0, n1) of the N samples (ranges tile [0, N); a rank may
// hold none) and writes it through MPI-IO with collective transfers; one rank is the same code with
// the range [0, N). The data go to `fields.h5.tmp`; once every rank has written and the file is
// closed, rank 0 adds the attributes and XDMF views, renames it to `fields.h5` and writes
// `fields.xdmf` the same way, so no reader ever sees a truncated file under the final name.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.hpp"

namespace pdegen {

struct FieldsMetadata {
  std::string pde;              // e.g. "poisson2d"
  std::vector<double> origin;   // coordinates of node 0, x first
  std::vector<double> spacing;  // node spacing per axis, x first
  std::string deck_yaml;        // the resolved deck
};

class FieldsWriter {
 public:
  // `path` is the final HDF5 file (e.g. "<output.dir>/fields.h5"); the XDMF goes next to it with
  // the extension .xdmf. This rank holds samples [first, last) of `total_samples`.
  FieldsWriter(std::string path, FieldsMetadata metadata, MPI_Comm comm, int64_t total_samples, int64_t first,
               int64_t last);

  // This rank's samples of one field: [last - first, 1, (Nz,) Ny, Nx], fp32 or fp64 (stored as
  // fp32), any channel blocking. Every rank adds the same names in the same order. Names are
  // [A-Za-z0-9_.-]+ (they become HDF5 paths and XML attributes).
  void add_field(const std::string& name, const Tensor& samples);
  // The global sample index of each of this rank's samples (last - first entries).
  void set_sample_index(std::vector<int64_t> global_indices);

  // Collective over the communicator: writes, closes and publishes both files. Throws on every
  // rank if any rank's input is inconsistent or rank 0's finishing steps fail.
  void write();

  const std::string& path() const { return path_; }
  std::string xdmf_path() const;

 private:
  void validate_collectively() const;
  void write_collective_data(const std::string& tmp) const;
  void finish(const std::string& tmp) const;  // rank 0

  std::string path_;
  FieldsMetadata metadata_;
  MPI_Comm comm_;
  int64_t total_ = 0, first_ = 0, last_ = 0;
  std::vector<std::pair<std::string, Tensor>> fields_;  // plain fp32, [count, 1, ...]
  std::vector<int64_t> sample_index_;
  bool have_sample_index_ = false;
};

}  // namespace pdegen

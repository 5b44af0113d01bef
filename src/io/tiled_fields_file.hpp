// A fields file (the layout of fields_file.hpp: /fields/<name> fp32 [N, (Nz,) Ny, Nx], /sample_index,
// XDMF views, the same attributes) written box by box, for domains too large for one rank to hold a
// sample: the datasets are created at once, any rank writes any box of any sample with an
// independent MPI-IO hyperslab write, and no rank ever holds a whole field. The data go to
// `<path>.tmp`, published under `path` (with its .xdmf) by finish() once every rank is done.
//
// Independent writes, because ranks write different numbers of boxes; ROMIO's data sieving is off
// for writes (a box of a wide grid is many short runs, and sieving would read and rewrite the whole
// span between them under a file lock).
#pragma once

#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/grid_box.hpp"
#include "core/tensor.hpp"
#include "io/fields_file.hpp"
#include "io/hdf5_util.hpp"

namespace pdegen {

// How the datasets are stored: contiguous (a file read whole, or box by box) or one HDF5 chunk per
// sample (a dataset read one sample at a time in any order); and for how many of the first samples
// the XDMF describes views (-1: all; a dataset of thousands of samples keeps its XDMF small).
struct FieldsLayout {
  bool chunk_per_sample = false;
  int64_t xdmf_samples = -1;
};

class TiledFieldsWriter {
 public:
  // Collective: creates `<path>.tmp` with one dataset per name of `sample_index.size()` samples on
  // `grid` (nodes per axis, slowest first), and the sample index (written by rank 0). Refuses (IoError,
  // before anything is written) a file the disk cannot hold.
  TiledFieldsWriter(std::string path, FieldsMetadata metadata, MPI_Comm comm, std::vector<int64_t> grid,
                    std::vector<std::string> names, const std::vector<int64_t>& sample_index,
                    FieldsLayout layout = {});
  // An unfinished file (an error on the way) is abandoned without the collective close, which the
  // other ranks might never reach; the error then ends the job.
  ~TiledFieldsWriter();
  TiledFieldsWriter(const TiledFieldsWriter&) = delete;
  TiledFieldsWriter& operator=(const TiledFieldsWriter&) = delete;

  // Independent: `values` (plain fp32 host, box.numel() elements, x fastest) into `box` of sample
  // `sample` of field `name`.
  void write_box(const std::string& name, int64_t sample, const GridBox& box, const Tensor& values);
  // Independent: that box back, as [1, 1, box...]; what other ranks wrote is visible after flush().
  Tensor read_box(const std::string& name, int64_t sample, const GridBox& box) const;
  // Collective: everything written so far reaches the file, for every rank to read.
  void flush();
  // Collective: closes the file, then rank 0 adds the attributes and XDMF views and publishes both
  // files. Throws IoError on every rank if any part failed anywhere.
  void finish();

  const std::string& path() const { return path_; }
  std::string xdmf_path() const;

 private:
  void create(const std::vector<int64_t>& sample_index);
  hid_t dataset(const std::string& name) const;
  // The file selection of `box` of `sample`, and a memory space of as many elements.
  std::pair<h5::Dataspace, h5::Dataspace> spaces(hid_t dataset, int64_t sample, const GridBox& box) const;

  std::string path_, tmp_;
  FieldsMetadata metadata_;
  MPI_Comm comm_;
  std::vector<int64_t> grid_;
  std::vector<std::string> names_;
  int64_t samples_ = 0;
  FieldsLayout layout_;
  h5::File file_;
  std::vector<h5::Dataset> datasets_;  // one per name
  h5::PropertyList dxpl_;
  bool finished_ = false;
};

}  // namespace pdegen

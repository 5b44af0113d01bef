// The fields file written box by box (io/tiled_fields_file.hpp): boxes of several samples written by
// whichever rank holds them, in any order, read back with the plain HDF5 C API as whole fields equal to
// what was written, with the fields file's sample index, attributes, XDMF views and XDMF document;
// nothing appears under the final name before finish(). A box another rank wrote is readable after
// flush(). Rank-count agnostic: run alone (MPI singleton) or under `mpiexec.mpich -n P`.
#include <hdf5.h>
#include <mpi.h>

#include <cstdlib>
#include <filesystem>

#include "io/hdf5_util.hpp"
#include "io/tiled_fields_file.hpp"
#include "io/xdmf.hpp"
#include "mpi_session.hpp"
#include "testing.hpp"

using namespace pdegen;
namespace fs = std::filesystem;

namespace {

int rank_of() {
  int r = 0;
  MPI_Comm_rank(testing::mpi_world(), &r);
  return r;
}
int ranks() {
  int s = 1;
  MPI_Comm_size(testing::mpi_world(), &s);
  return s;
}

// One directory for all ranks (rank 0 makes it), removed at the end.
std::string shared_dir() {
  std::string path;
  if (rank_of() == 0) {
    path = (fs::temp_directory_path() / "pdegen_tiled_XXXXXX").string();
    REQUIRE(mkdtemp(path.data()) != nullptr);
  }
  int64_t size = static_cast<int64_t>(path.size());
  MPI_Bcast(&size, 1, MPI_INT64_T, 0, MPI_COMM_WORLD);
  path.resize(static_cast<size_t>(size));
  MPI_Bcast(path.data(), static_cast<int>(size), MPI_CHAR, 0, MPI_COMM_WORLD);
  return path;
}

// Field f's value at sample e, node (z, y, x).
float value(int f, int64_t e, int64_t z, int64_t y, int64_t x) {
  return static_cast<float>((f == 0 ? 1 : -1) * (10000 * e + 1000 * z + 100 * y + x) + 0.25);
}

// Boxes of `tile` nodes per axis of `grid` (slowest first), the last ones shorter.
std::vector<GridBox> boxes_of(const std::vector<int64_t>& grid, int64_t tile) {
  std::vector<GridBox> out{GridBox{{}, {}}};
  for (int64_t n : grid) {
    std::vector<GridBox> next;
    for (const GridBox& b : out)
      for (int64_t s = 0; s < n; s += tile) {
        GridBox c = b;
        c.first.push_back(s);
        c.count.push_back(std::min(tile, n - s));
        next.push_back(c);
      }
    out = next;
  }
  return out;
}

Tensor box_values(int f, int64_t e, const GridBox& box) {
  Shape shape{1, 1};
  for (int64_t c : box.count) shape.push_back(c);
  Tensor t = Tensor::empty(shape);
  const bool three = box.dims() == 3;
  const int64_t nz = three ? box.count[0] : 1, ny = box.count[box.dims() - 2], nx = box.count.back();
  const int64_t z0 = three ? box.first[0] : 0, y0 = box.first[box.dims() - 2], x0 = box.first.back();
  float* p = t.data<float>();
  for (int64_t z = 0; z < nz; ++z)
    for (int64_t y = 0; y < ny; ++y)
      for (int64_t x = 0; x < nx; ++x) *p++ = value(f, e, z0 + z, y0 + y, x0 + x);
  return t;
}

void check_file(const std::string& path, const std::vector<int64_t>& grid, int64_t samples,
                const std::vector<int64_t>& index) {
  h5::PropertyList fapl = h5::serial_fapl();
  h5::File file = h5::open_file(path, H5F_ACC_RDONLY, fapl);
  for (int f = 0; f < 2; ++f) {
    const std::string name = f == 0 ? "log_nu" : "u_pred";
    const auto data = h5::read_dataset_as<float>(file, "/fields/" + name, H5T_NATIVE_FLOAT);
    GridBox whole{std::vector<int64_t>(grid.size(), 0), grid};
    size_t at = 0;
    bool equal = true;
    for (int64_t e = 0; e < samples; ++e) {
      const Tensor want = box_values(f, e, whole);
      for (int64_t i = 0; i < want.numel(); ++i) equal = equal && data[at++] == want.data<float>()[i];
    }
    CHECK(at == data.size());
    CHECK(equal);
    CHECK(fs::exists(path.substr(0, path.size() - 3) + ".xdmf"));
    CHECK(h5::link_exists(file, xdmf_view_path(name, samples - 1)));
  }
  CHECK(h5::read_dataset_as<int64_t>(file, "/sample_index", H5T_NATIVE_INT64) == index);
  CHECK(h5::read_string_attribute(file, "pde") == "poisson3d");
  std::vector<int64_t> nodes(grid.rbegin(), grid.rend());
  CHECK(h5::read_int64s_attribute(file, "resolution") == nodes);
}

}  // namespace

TEST_CASE("a fields file written box by box over the ranks holds every field whole") {
  const std::string dir = shared_dir();
  for (const std::vector<int64_t>& grid : {std::vector<int64_t>{24, 40}, std::vector<int64_t>{8, 12, 17}}) {
    CAPTURE(grid.size());
    const int64_t samples = 3;
    const std::vector<int64_t> index{11, 12, 13};
    const std::string path = dir + "/tiled" + std::to_string(grid.size()) + ".h5";
    const std::vector<double> origin(grid.size(), 0.0), spacing(grid.size(), 0.5);
    TiledFieldsWriter writer(path, {"poisson3d", origin, spacing, "deck: {}\n"}, MPI_COMM_WORLD, grid,
                             {"log_nu", "u_pred"}, index);
    const std::vector<GridBox> boxes = boxes_of(grid, 5);
    const int64_t items = samples * static_cast<int64_t>(boxes.size());
    // Round robin, backwards: no rank writes a contiguous range, and the order is not the file's.
    for (int64_t item = items - 1 - rank_of(); item >= 0; item -= ranks()) {
      const int64_t e = item / static_cast<int64_t>(boxes.size());
      const GridBox& box = boxes[static_cast<size_t>(item % static_cast<int64_t>(boxes.size()))];
      for (int f = 0; f < 2; ++f)
        writer.write_box(f == 0 ? "log_nu" : "u_pred", e, box, box_values(f, e, box));
    }
    if (rank_of() == 0) CHECK_FALSE(fs::exists(path));
    writer.flush();
    // A box written by another rank (item 0 is the last rank's in the round robin when P > 1).
    const Tensor back = writer.read_box("u_pred", 0, boxes[0]);
    const Tensor want = box_values(1, 0, boxes[0]);
    CHECK(std::equal(back.data<float>(), back.data<float>() + back.numel(), want.data<float>()));
    writer.finish();
    CHECK(fs::exists(path));
    CHECK_FALSE(fs::exists(path + ".tmp"));
    check_file(path, grid, samples, index);
    MPI_Barrier(MPI_COMM_WORLD);
  }
  if (rank_of() == 0) fs::remove_all(dir);
}

TEST_CASE("a box outside the grid or of another size is refused") {
  const std::string dir = shared_dir();
  TiledFieldsWriter writer(dir + "/bad.h5", {"poisson2d", {0, 0}, {1, 1}, ""}, MPI_COMM_WORLD, {8, 8},
                           {"u_pred"}, {1});
  const GridBox box{{4, 4}, {5, 4}};
  CHECK_THROWS(writer.write_box("u_pred", 0, box, box_values(0, 0, GridBox{{0, 0}, {5, 4}})));
  CHECK_THROWS(
      writer.write_box("u_pred", 0, GridBox{{0, 0}, {4, 4}}, box_values(0, 0, GridBox{{0, 0}, {4, 5}})));
  CHECK_THROWS(
      writer.write_box("nothing", 0, GridBox{{0, 0}, {4, 4}}, box_values(0, 0, GridBox{{0, 0}, {4, 4}})));
  writer.finish();
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank_of() == 0) fs::remove_all(dir);
}

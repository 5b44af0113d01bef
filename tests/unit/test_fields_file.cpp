// fields.h5 + fields.xdmf: what FieldsWriter writes is read back with the plain HDF5 C API (values,
// shapes, attributes, the virtual per-sample views) and the XDMF is parsed and cross-checked
// against the file. Rank-count agnostic: run alone (MPI singleton) or under `mpiexec.mpich -n P`,
// where each rank writes its own uneven share and every rank checks the whole file.
//
// With PDEGEN_TEST_KEEP_DIR set, the 2D and 3D examples are written to <dir>/2d and <dir>/3d and
// kept, for tests/io/test_paraview.sh. Their field u_ref is x + 10 y + 100 z + 1000 e at node
// (x, y, z) of sample position e, so a viewer's orientation and time steps can be checked.
#include <fmt/format.h>
#include <hdf5.h>
#include <mpi.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "io/fields_file.hpp"
#include "io/hdf5_util.hpp"
#include "io/xdmf.hpp"
#include "testing.hpp"

using namespace pdegen;
namespace fs = std::filesystem;

namespace {

// The shared test main does not start MPI; MPICH allows a singleton MPI_Init without mpiexec.
struct MpiSession {
  MpiSession() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) MPI_Init(nullptr, nullptr);
  }
  ~MpiSession() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  }
};
const MpiSession mpi_session;

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
int world_size() {
  int s = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}

// A fresh directory, the same on every rank (rank 0 creates it), removed at the end unless kept.
class SharedTempDir {
 public:
  explicit SharedTempDir(const std::string& keep_subdir = "") {
    const char* keep = std::getenv("PDEGEN_TEST_KEEP_DIR");
    std::string path;
    if (keep && !keep_subdir.empty()) {
      path = (fs::path(keep) / keep_subdir).string();
      keep_ = true;
    } else if (world_rank() == 0) {
      std::string pattern = (fs::temp_directory_path() / "pdegen_fields_XXXXXX").string();
      REQUIRE(mkdtemp(pattern.data()) != nullptr);
      path = pattern;
    }
    if (world_rank() == 0) fs::create_directories(path);
    int64_t size = static_cast<int64_t>(path.size());
    MPI_Bcast(&size, 1, MPI_INT64_T, 0, MPI_COMM_WORLD);
    path.resize(static_cast<size_t>(size));
    MPI_Bcast(path.data(), static_cast<int>(size), MPI_CHAR, 0, MPI_COMM_WORLD);
    path_ = path;
  }
  ~SharedTempDir() {
    MPI_Barrier(MPI_COMM_WORLD);
    std::error_code ec;
    if (!keep_ && world_rank() == 0) fs::remove_all(path_, ec);
  }
  std::string operator/(const std::string& name) const { return (fs::path(path_) / name).string(); }

 private:
  std::string path_;
  bool keep_ = false;
};

// This rank's share of N samples: deliberately uneven, the last rank gets the most.
std::pair<int64_t, int64_t> my_range(int64_t total) {
  const int64_t p = world_size(), r = world_rank();
  auto start = [&](int64_t k) { return k == p ? total : (total * k * k) / (p * p); };
  return {start(r), start(r + 1)};
}

struct Example {
  std::vector<int64_t> nodes;  // x first
  std::vector<double> origin, spacing;
  int64_t samples;
  std::vector<std::string> fields{"log_nu", "u_pred", "u_ref", "error"};

  int64_t points() const {
    int64_t n = 1;
    for (int64_t e : nodes) n *= e;
    return n;
  }
  // Value of field f at global sample position e and flat node index s (x fastest).
  double value(size_t f, int64_t e, int64_t s) const {
    double xyz[3] = {0, 0, 0};
    int64_t rest = s;
    for (size_t a = 0; a < nodes.size(); ++a) {
      xyz[a] = origin[a] + spacing[a] * static_cast<double>(rest % nodes[a]);
      rest /= nodes[a];
    }
    const double x = xyz[0], y = xyz[1], z = xyz[2], t = static_cast<double>(e);
    switch (f) {
      case 0:
        return std::sin(3 * x + t) * std::cos(2 * y - z);
      case 1:
        return x * (1 - x) * y * (1 - y) * (1 + t);
      case 2:
        return x + 10 * y + 100 * z + 1000 * t;
      default:
        return 1e-3 * (x - y + z) * (t + 1);
    }
  }
  int64_t global_index(int64_t e) const { return (int64_t{1} << 40) + 3 * e + 1; }
  Shape shape(int64_t count) const {
    if (nodes.size() == 2) return Shape{count, 1, nodes[1], nodes[0]};
    return Shape{count, 1, nodes[2], nodes[1], nodes[0]};
  }
};

Example example_2d() { return {{7, 5}, {0, 0}, {1.0 / 6, 1.0 / 4}, 5}; }
Example example_3d() { return {{6, 5, 4}, {0, 0, 0}, {1.0 / 5, 1.0 / 4, 1.0 / 3}, 3}; }

FieldsMetadata metadata_of(const Example& ex) {
  return {ex.nodes.size() == 2 ? "poisson2d" : "poisson3d", ex.origin, ex.spacing,
          "problem:\n  pde: test\n  resolution: 7\n# ünïcode survives\n"};
}

// Writes this rank's share of `ex` (one field given in fp64 to exercise the conversion).
void write_example(const Example& ex, const std::string& path, int64_t first, int64_t last) {
  FieldsWriter writer(path, metadata_of(ex), MPI_COMM_WORLD, ex.samples, first, last);
  const int64_t count = last - first, points = ex.points();
  for (size_t f = 0; f < ex.fields.size(); ++f) {
    const DType dtype = f == 1 ? DType::f64 : DType::f32;
    Tensor t = Tensor::empty(ex.shape(count), dtype);
    for (int64_t i = 0; i < count; ++i)
      for (int64_t s = 0; s < points; ++s) {
        const double v = ex.value(f, first + i, s);
        if (dtype == DType::f64)
          t.data<double>()[i * points + s] = v;
        else
          t.data<float>()[i * points + s] = static_cast<float>(v);
      }
    writer.add_field(ex.fields[f], t);
  }
  std::vector<int64_t> index;
  for (int64_t i = first; i < last; ++i) index.push_back(ex.global_index(i));
  writer.set_sample_index(index);
  writer.write();
}

std::vector<float> read_floats(hid_t file, const std::string& name, std::vector<hsize_t>* dims) {
  hid_t d = H5Dopen2(file, name.c_str(), H5P_DEFAULT);
  REQUIRE(d >= 0);
  hid_t space = H5Dget_space(d);
  const int rank = H5Sget_simple_extent_ndims(space);
  dims->assign(static_cast<size_t>(rank), 0);
  H5Sget_simple_extent_dims(space, dims->data(), nullptr);
  std::vector<float> out(static_cast<size_t>(H5Sget_simple_extent_npoints(space)));
  CHECK(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()) >= 0);
  H5Sclose(space);
  H5Dclose(d);
  return out;
}

std::vector<hsize_t> expected_dims(const Example& ex, bool with_samples) {
  std::vector<hsize_t> dims;
  if (with_samples) dims.push_back(static_cast<hsize_t>(ex.samples));
  for (auto it = ex.nodes.rbegin(); it != ex.nodes.rend(); ++it) dims.push_back(static_cast<hsize_t>(*it));
  return dims;
}

void check_file_contents(const Example& ex, const std::string& path) {
  hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  REQUIRE(file >= 0);
  const int64_t points = ex.points();
  for (size_t f = 0; f < ex.fields.size(); ++f) {
    CAPTURE(ex.fields[f]);
    std::vector<hsize_t> dims;
    const std::vector<float> values = read_floats(file, "/fields/" + ex.fields[f], &dims);
    CHECK(dims == expected_dims(ex, true));
    REQUIRE(static_cast<int64_t>(values.size()) == ex.samples * points);
    int64_t wrong = 0;
    for (int64_t e = 0; e < ex.samples; ++e)
      for (int64_t s = 0; s < points; ++s)
        wrong += values[static_cast<size_t>(e * points + s)] != static_cast<float>(ex.value(f, e, s));
    CHECK(wrong == 0);
  }
  std::vector<int64_t> index(static_cast<size_t>(ex.samples));
  hid_t d = H5Dopen2(file, "/sample_index", H5P_DEFAULT);
  REQUIRE(d >= 0);
  CHECK(H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, index.data()) >= 0);
  H5Dclose(d);
  for (int64_t e = 0; e < ex.samples; ++e) CHECK(index[static_cast<size_t>(e)] == ex.global_index(e));

  const FieldsMetadata meta = metadata_of(ex);
  CHECK(h5::read_string_attribute(file, "pde") == meta.pde);
  CHECK(h5::read_doubles_attribute(file, "spacing") == ex.spacing);
  CHECK(h5::read_doubles_attribute(file, "origin") == ex.origin);
  CHECK(h5::read_int64s_attribute(file, "resolution") == ex.nodes);
  CHECK(h5::read_string_attribute(file, "deck") == meta.deck_yaml);
  CHECK(h5::read_string_attribute(file, "pdegen_version").find("git") != std::string::npos);
  H5Fclose(file);
}

// --- a minimal XML reader: enough to prove the XDMF well-formed and to walk it ---------------
struct Element {
  std::string name;
  std::map<std::string, std::string> attrs;
  std::string text;
  std::vector<Element> children;
  std::vector<const Element*> all(const std::string& tag) const {
    std::vector<const Element*> out;
    for (const Element& c : children) {
      if (c.name == tag) out.push_back(&c);
      for (const Element* d : c.all(tag)) out.push_back(d);
    }
    return out;
  }
};

// Parses `xml` into a tree under a synthetic root; any syntax error or unbalanced tag fails.
Element parse_xml(const std::string& xml) {
  Element root;
  std::vector<Element*> stack{&root};
  size_t i = 0;
  auto fail = [&](const std::string& why) { FAIL("XML error at offset " << i << ": " << why); };
  while (i < xml.size()) {
    if (xml[i] != '<') {
      const size_t next = xml.find('<', i);
      stack.back()->text += xml.substr(i, next - i);
      i = next == std::string::npos ? xml.size() : next;
      continue;
    }
    if (xml.compare(i, 2, "<?") == 0 || xml.compare(i, 2, "<!") == 0) {
      const size_t end = xml.find('>', i);
      if (end == std::string::npos) fail("unterminated declaration");
      i = end + 1;
      continue;
    }
    const size_t end = xml.find('>', i);
    if (end == std::string::npos) fail("unterminated tag");
    std::string tag = xml.substr(i + 1, end - i - 1);
    i = end + 1;
    if (tag.starts_with('/')) {
      if (stack.size() < 2 || stack.back()->name != tag.substr(1))
        fail(fmt::format("unbalanced </{}>", tag.substr(1)));
      stack.pop_back();
      continue;
    }
    const bool self_closing = tag.ends_with('/');
    if (self_closing) tag.pop_back();
    std::istringstream in(tag);
    Element e;
    in >> e.name;
    std::string rest;
    std::getline(in, rest);
    for (size_t p = 0; p < rest.size();) {
      while (p < rest.size() && rest[p] == ' ') ++p;
      if (p >= rest.size()) break;
      const size_t eq = rest.find("=\"", p);
      if (eq == std::string::npos) fail(fmt::format("attribute without =\"value\": {}", rest.substr(p)));
      const size_t close = rest.find('"', eq + 2);
      if (close == std::string::npos) fail("unterminated attribute value");
      const std::string key = rest.substr(p, eq - p);
      if (e.attrs.count(key)) fail(fmt::format("duplicate attribute {}", key));
      e.attrs[key] = rest.substr(eq + 2, close - eq - 2);
      p = close + 1;
    }
    stack.back()->children.push_back(e);
    if (!self_closing) stack.push_back(&stack.back()->children.back());
  }
  if (stack.size() != 1) FAIL("unclosed <" << stack.back()->name << ">");
  return root;
}

std::vector<double> numbers(const std::string& text) {
  std::istringstream in(text);
  std::vector<double> out;
  for (double v; in >> v;) out.push_back(v);
  return out;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void check_xdmf(const Example& ex, const std::string& h5_path, const std::string& xdmf_path) {
  const Element root = parse_xml(slurp(xdmf_path));
  const auto collections = root.all("Grid");
  REQUIRE(!collections.empty());
  CHECK(collections[0]->attrs.at("CollectionType") == "Temporal");
  const std::vector<Element>& grids = collections[0]->children;
  REQUIRE(static_cast<int64_t>(grids.size()) == ex.samples);

  // 2D grids are written as 3D ones with a single node along z (ParaView puts a 2DCoRectMesh in
  // the y-z plane); XDMF lists z, y, x.
  std::vector<double> origin(ex.origin.rbegin(), ex.origin.rend()),
      spacing(ex.spacing.rbegin(), ex.spacing.rend());
  std::string dims = fmt::format("{}", fmt::join(expected_dims(ex, false), " "));
  if (ex.nodes.size() == 2) {
    dims = "1 " + dims;
    origin.insert(origin.begin(), 0.0);
    spacing.insert(spacing.begin(), 1.0);
  }
  hid_t file = H5Fopen(h5_path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  REQUIRE(file >= 0);
  for (int64_t e = 0; e < ex.samples; ++e) {
    const Element& grid = grids[static_cast<size_t>(e)];
    CAPTURE(e);
    CHECK(grid.attrs.at("Name") == fmt::format("sample_{}", ex.global_index(e)));
    REQUIRE(!grid.all("Time").empty());
    CHECK(grid.all("Time")[0]->attrs.at("Value") == std::to_string(e));
    const Element* topology = grid.all("Topology").at(0);
    CHECK(topology->attrs.at("TopologyType") == "3DCoRectMesh");
    CHECK(topology->attrs.at("Dimensions") == dims);
    const Element* geometry = grid.all("Geometry").at(0);
    CHECK(geometry->attrs.at("GeometryType") == "ORIGIN_DXDYDZ");
    const auto items = geometry->all("DataItem");
    REQUIRE(items.size() == 2);
    CHECK(numbers(items[0]->text) == origin);
    CHECK(numbers(items[1]->text) == spacing);

    std::vector<std::string> seen;
    for (const Element* attr : grid.all("Attribute")) {
      const Element* item = attr->all("DataItem").at(0);
      if (attr->attrs.at("Center") == "Grid") {
        CHECK(attr->attrs.at("Name") == "sample_index");
        CHECK(numbers(item->text) == std::vector<double>{static_cast<double>(ex.global_index(e))});
        continue;
      }
      seen.push_back(attr->attrs.at("Name"));
      CHECK(item->attrs.at("Format") == "HDF");
      CHECK(item->attrs.at("Dimensions") == dims);
      const std::string ref = item->text;
      const size_t colon = ref.find(':');
      REQUIRE(colon != std::string::npos);
      CHECK(ref.substr(0, colon) == fs::path(h5_path).filename().string());
      const std::string dataset = ref.substr(colon + 1);
      CHECK(dataset == xdmf_view_path(seen.back(), e));
      std::vector<hsize_t> view_dims;
      const std::vector<float> view = read_floats(file, dataset, &view_dims);
      CHECK(view_dims == expected_dims(ex, false));
    }
    CHECK(seen == ex.fields);
  }
  H5Fclose(file);
}

void check_views(const Example& ex, const std::string& path) {
  hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  REQUIRE(file >= 0);
  const int64_t points = ex.points();
  for (size_t f = 0; f < ex.fields.size(); ++f)
    for (int64_t e = 0; e < ex.samples; ++e) {
      CAPTURE(ex.fields[f]);
      CAPTURE(e);
      const std::string name = xdmf_view_path(ex.fields[f], e);
      hid_t d = H5Dopen2(file, name.c_str(), H5P_DEFAULT);
      REQUIRE(d >= 0);
      hid_t dcpl = H5Dget_create_plist(d);
      CHECK(H5Pget_layout(dcpl) == H5D_VIRTUAL);  // a view, not a copy
      H5Pclose(dcpl);
      H5Dclose(d);
      std::vector<hsize_t> dims;
      const std::vector<float> values = read_floats(file, name, &dims);
      CHECK(dims == expected_dims(ex, false));
      int64_t wrong = 0;
      for (int64_t s = 0; s < points; ++s)
        wrong += values[static_cast<size_t>(s)] != static_cast<float>(ex.value(f, e, s));
      CHECK(wrong == 0);
    }
  H5Fclose(file);
}

void check_no_temporaries(const std::string& dir) {
  for (const auto& entry : fs::directory_iterator(dir)) CHECK(entry.path().extension() != ".tmp");
}

void round_trip(const Example& ex, const std::string& keep_subdir) {
  SharedTempDir dir(keep_subdir);
  const auto [first, last] = my_range(ex.samples);
  write_example(ex, dir / "fields.h5", first, last);
  check_file_contents(ex, dir / "fields.h5");
  check_views(ex, dir / "fields.h5");
  check_xdmf(ex, dir / "fields.h5", dir / "fields.xdmf");
  check_no_temporaries(dir / "");
}

}  // namespace

TEST_CASE("2D fields round trip: values, shapes N x Ny x Nx, sample indices and root attributes") {
  round_trip(example_2d(), "2d");
}

TEST_CASE("3D fields round trip: values, shapes N x Nz x Ny x Nx, sample indices and root attributes") {
  round_trip(example_3d(), "3d");
}

TEST_CASE("virtual datasets /xdmf/<field>/<sample> read back exactly that sample's slab") {
  const Example ex = example_2d();
  SharedTempDir dir;
  const auto [first, last] = my_range(ex.samples);
  write_example(ex, dir / "fields.h5", first, last);
  check_views(ex, dir / "fields.h5");
}

TEST_CASE("the XDMF is well-formed XML whose data items name existing datasets of the right shape") {
  const Example ex = example_3d();
  SharedTempDir dir;
  const auto [first, last] = my_range(ex.samples);
  write_example(ex, dir / "fields.h5", first, last);
  check_xdmf(ex, dir / "fields.h5", dir / "fields.xdmf");
}

TEST_CASE("ranks that hold no samples still take part in the collective write") {
  const Example ex = example_2d();
  SharedTempDir dir;
  // Everything on the last rank; any other rank holds the empty range.
  const bool last_rank = world_rank() == world_size() - 1;
  write_example(ex, dir / "fields.h5", last_rank ? 0 : ex.samples, ex.samples);
  check_file_contents(ex, dir / "fields.h5");
}

TEST_CASE("a rewrite replaces the old files whole and leaves no temporary files") {
  SharedTempDir dir;
  Example ex = example_2d();
  auto [first, last] = my_range(ex.samples);
  write_example(ex, dir / "fields.h5", first, last);
  ex.samples = 2;
  std::tie(first, last) = my_range(ex.samples);
  write_example(ex, dir / "fields.h5", first, last);
  check_file_contents(ex, dir / "fields.h5");
  check_xdmf(ex, dir / "fields.h5", dir / "fields.xdmf");
  check_no_temporaries(dir / "");
}

TEST_CASE("inconsistent input throws on every rank and publishes nothing") {
  const Example ex = example_2d();
  SharedTempDir dir;
  const auto [first, last] = my_range(ex.samples);
  FieldsWriter writer(dir / "fields.h5", metadata_of(ex), MPI_COMM_WORLD, ex.samples, first, last);
  writer.add_field("u_pred", Tensor::zeros(ex.shape(last - first)));
  writer.set_sample_index(std::vector<int64_t>(static_cast<size_t>(last - first) + 1, 0));  // one too many
  CHECK_THROWS_AS(writer.write(), Error);
  MPI_Barrier(MPI_COMM_WORLD);
  CHECK_FALSE(fs::exists(dir / "fields.h5"));
  CHECK_FALSE(fs::exists(dir / "fields.h5.tmp"));
  CHECK_FALSE(fs::exists(dir / "fields.xdmf"));
}

TEST_CASE("sample ranges that leave a gap or overlap are rejected") {
  const Example ex = example_2d();
  SharedTempDir dir;
  auto [first, last] = my_range(ex.samples);
  if (world_rank() == world_size() - 1) last -= 1;  // the last rank holds the most: now one is missing
  FieldsWriter writer(dir / "fields.h5", metadata_of(ex), MPI_COMM_WORLD, ex.samples, first, last);
  writer.add_field("u_pred", Tensor::zeros(ex.shape(last - first)));
  writer.set_sample_index(std::vector<int64_t>(static_cast<size_t>(last - first), 0));
  CHECK_THROWS_WITH_AS(writer.write(), doctest::Contains("sample ranges"), Error);
}

TEST_CASE("fields with a bad name, several channels or a foreign dtype are refused") {
  FieldsWriter writer("unused.h5", metadata_of(example_2d()), MPI_COMM_WORLD, 1, 0, 1);
  CHECK_THROWS_AS(writer.add_field("u/pred", Tensor::zeros({1, 1, 5, 7})), Error);
  CHECK_THROWS_AS(writer.add_field("u<", Tensor::zeros({1, 1, 5, 7})), Error);
  CHECK_THROWS_AS(writer.add_field("u", Tensor::zeros({1, 2, 5, 7})), Error);
  CHECK_THROWS_AS(writer.add_field("u", Tensor::zeros({1, 5, 7})), Error);
  CHECK_THROWS_AS(writer.add_field("u", Tensor::zeros({1, 1, 5, 7}, DType::f16)), Error);
  writer.add_field("u", Tensor::zeros({1, 1, 5, 7}));
  CHECK_THROWS_AS(writer.add_field("u", Tensor::zeros({1, 1, 5, 7})), Error);
}

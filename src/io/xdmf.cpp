// XDMF text and the virtual datasets it points at.
#include "io/xdmf.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "core/error.hpp"
#include "io/atomic_file.hpp"
#include "io/hdf5_util.hpp"

namespace pdegen {

namespace {

void check_grid(const UniformGrid& grid) {
  const size_t d = grid.nodes.size();
  PDEGEN_CHECK(d == 2 || d == 3, "XDMF grids are 2D or 3D, got {} axes", d);
  PDEGEN_CHECK(grid.origin.size() == d && grid.spacing.size() == d,
               "grid has {} axes but {} origin and {} spacing values", d, grid.origin.size(),
               grid.spacing.size());
}

// "Nz Ny Nx" style lists: XDMF wants the slowest axis first.
template <class T>
std::string slowest_first(const std::vector<T>& x_first) {
  std::vector<T> v(x_first.rbegin(), x_first.rend());
  return fmt::format("{}", fmt::join(v, " "));
}

// The file name is the one free-form text in the document.
std::string xml_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::vector<hsize_t> slowest_first_dims(const std::vector<int64_t>& nodes) {
  std::vector<hsize_t> dims;
  for (auto it = nodes.rbegin(); it != nodes.rend(); ++it) dims.push_back(static_cast<hsize_t>(*it));
  return dims;
}

}  // namespace

std::string xdmf_view_path(const std::string& field, int64_t position) {
  return fmt::format("/xdmf/{}/{:06d}", field, position);
}

void create_xdmf_views(hid_t file, const std::vector<std::string>& fields, int64_t samples,
                       const UniformGrid& grid) {
  check_grid(grid);
  const std::vector<hsize_t> sample_dims = slowest_first_dims(grid.nodes);
  std::vector<hsize_t> source_dims{static_cast<hsize_t>(samples)};
  source_dims.insert(source_dims.end(), sample_dims.begin(), sample_dims.end());

  h5::Dataspace view_space(
      H5_CHECK(H5Screate_simple(static_cast<int>(sample_dims.size()), sample_dims.data(), nullptr)));
  h5::Dataspace source_space(
      H5_CHECK(H5Screate_simple(static_cast<int>(source_dims.size()), source_dims.data(), nullptr)));
  std::vector<hsize_t> start(source_dims.size(), 0), count = source_dims;
  count[0] = 1;
  for (const std::string& field : fields) {
    const std::string source = "/fields/" + field;
    for (int64_t e = 0; e < samples; ++e) {
      start[0] = static_cast<hsize_t>(e);
      H5_CHECK(
          H5Sselect_hyperslab(source_space, H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr));
      h5::PropertyList dcpl = h5::make_plist(H5P_DATASET_CREATE);
      // "." = this same file, so the mapping survives renaming and moving the file.
      H5_CHECK(H5Pset_virtual(dcpl, view_space, ".", source.c_str(), source_space));
      h5::create_dataset(file, xdmf_view_path(field, e), H5T_IEEE_F32LE, sample_dims, dcpl);
    }
  }
}

std::string xdmf_text(const std::string& h5_file_name, const UniformGrid& grid,
                      const std::vector<std::string>& fields, const std::vector<int64_t>& sample_index) {
  check_grid(grid);
  // Every grid is written as a 3DCoRectMesh; a 2D one gets a single node along z (see xdmf.hpp).
  UniformGrid g = grid;
  if (g.nodes.size() == 2) {
    g.nodes.push_back(1);
    g.origin.push_back(0.0);
    g.spacing.push_back(1.0);
  }
  const std::string dims = slowest_first(g.nodes);
  const std::string topology =
      fmt::format(R"(<Topology TopologyType="3DCoRectMesh" Dimensions="{}"/>)", dims);
  const std::string geometry = fmt::format(
      "<Geometry GeometryType=\"ORIGIN_DXDYDZ\">\n"
      "          <DataItem Name=\"Origin\" Dimensions=\"3\" NumberType=\"Float\" Precision=\"8\" "
      "Format=\"XML\">{}</DataItem>\n"
      "          <DataItem Name=\"Spacing\" Dimensions=\"3\" NumberType=\"Float\" Precision=\"8\" "
      "Format=\"XML\">{}</DataItem>\n"
      "        </Geometry>",
      slowest_first(g.origin), slowest_first(g.spacing));

  std::string out =
      "<?xml version=\"1.0\" ?>\n"
      "<!DOCTYPE Xdmf SYSTEM \"Xdmf.dtd\" []>\n"
      "<Xdmf Version=\"3.0\" xmlns:xi=\"http://www.w3.org/2001/XInclude\">\n"
      "  <Domain>\n"
      "    <Grid Name=\"samples\" GridType=\"Collection\" CollectionType=\"Temporal\">\n";
  for (size_t e = 0; e < sample_index.size(); ++e) {
    out += fmt::format("      <Grid Name=\"sample_{}\" GridType=\"Uniform\">\n", sample_index[e]);
    out += fmt::format("        <Time Value=\"{}\"/>\n", e);
    out += fmt::format("        {}\n        {}\n", topology, geometry);
    for (const std::string& field : fields) {
      out += fmt::format(
          "        <Attribute Name=\"{}\" AttributeType=\"Scalar\" Center=\"Node\">\n"
          "          <DataItem Dimensions=\"{}\" NumberType=\"Float\" Precision=\"4\" "
          "Format=\"HDF\">{}:{}</DataItem>\n"
          "        </Attribute>\n",
          xml_escape(field), dims, xml_escape(h5_file_name),
          xml_escape(xdmf_view_path(field, static_cast<int64_t>(e))));
    }
    out += fmt::format(
        "        <Attribute Name=\"sample_index\" AttributeType=\"Scalar\" Center=\"Grid\">\n"
        "          <DataItem Dimensions=\"1\" NumberType=\"Int\" Precision=\"8\" "
        "Format=\"XML\">{}</DataItem>\n"
        "        </Attribute>\n",
        sample_index[e]);
    out += "      </Grid>\n";
  }
  out +=
      "    </Grid>\n"
      "  </Domain>\n"
      "</Xdmf>\n";
  return out;
}

void write_xdmf(const std::string& path, const std::string& h5_file_name, const UniformGrid& grid,
                const std::vector<std::string>& fields, const std::vector<int64_t>& sample_index) {
  write_text_file_atomically(path, xdmf_text(h5_file_name, grid, fields, sample_index));
}

}  // namespace pdegen

// The dataset index (see dataset_index.hpp).
#include "data/dataset_index.hpp"

#include <fmt/format.h>
#include <glob.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <functional>

#include "core/error.hpp"
#include "io/hdf5_util.hpp"

namespace pdegen::data {

namespace fs = std::filesystem;

std::vector<std::string> expand_files(const std::string& pattern) {
  glob_t g{};
  const int rc = ::glob(pattern.c_str(), GLOB_NOSORT, nullptr, &g);
  std::vector<std::string> files;
  if (rc == 0)
    for (size_t i = 0; i < g.gl_pathc; ++i) files.emplace_back(g.gl_pathv[i]);
  globfree(&g);
  std::sort(files.begin(), files.end());
  if (files.empty())
    throw UserError(
        fmt::format("data.files '{}' matches no file (a path or a glob such as "
                    "'runs/dataset/dataset_*.h5'; relative paths are taken from the working "
                    "directory, {})",
                    pattern, fs::current_path().string()));
  return files;
}

namespace {

std::string shape_text(const std::vector<hsize_t>& dims) {
  std::string s;
  for (hsize_t d : dims) s += fmt::format("{}{}", s.empty() ? "" : ", ", d);
  return "[" + s + "]";
}

std::string grid_text(const std::vector<int64_t>& grid) {
  std::string s = "[N";
  for (int64_t g : grid) s += fmt::format(", {}", g);
  return s + "]";
}

// 4 or 8 for IEEE little-endian floats; throws otherwise.
int element_bytes(hid_t dataset, const std::string& where) {
  const h5::Datatype type(H5_CHECK(H5Dget_type(dataset)));
  if (H5_CHECK(H5Tequal(type, H5T_IEEE_F32LE)) > 0) return 4;
  if (H5_CHECK(H5Tequal(type, H5T_IEEE_F64LE)) > 0) return 8;
  const bool is_float = H5Tget_class(type) == H5T_FLOAT;
  throw UserError(
      fmt::format("{} holds {}, expected 32- or 64-bit little-endian floats", where,
                  is_float ? "floats of another size or byte order" : "values that are not floats"));
}

// N after checking the dataset's shape against [N, grid...] or [N, 1, grid...].
int64_t sample_count(hid_t dataset, const std::vector<int64_t>& grid, const std::string& where) {
  const std::vector<hsize_t> dims = h5::dataset_dims(dataset);
  const size_t g = grid.size();
  const bool channel = dims.size() == g + 2 && dims[1] == 1;
  bool fits = dims.size() == g + 1 || channel;
  for (size_t a = 0; fits && a < g; ++a) fits = dims[dims.size() - g + a] == static_cast<hsize_t>(grid[a]);
  if (!fits)
    throw UserError(
        fmt::format("{} has shape {}, expected {} (samples first, then the problem's grid, slowest "
                    "axis first; a channel axis of 1 after N is allowed)",
                    where, shape_text(dims), grid_text(grid)));
  if (dims[0] == 0) throw UserError(fmt::format("{} holds no samples", where));
  return static_cast<int64_t>(dims[0]);
}

// Where each sample of a chunked dataset lies: its chunk must be the whole sample, unfiltered.
void chunk_offsets(hid_t dataset, hid_t dcpl, int rank, uint64_t bytes, const std::string& where,
                   std::vector<uint64_t>& offset) {
  std::vector<hsize_t> chunk(static_cast<size_t>(rank));
  H5_CHECK(H5Pget_chunk(dcpl, rank, chunk.data()));
  const std::vector<hsize_t> dims = h5::dataset_dims(dataset);
  if (chunk[0] != 1 || !std::equal(chunk.begin() + 1, chunk.end(), dims.begin() + 1))
    throw UserError(
        fmt::format("{} is stored in chunks of {}, expected one sample per chunk [1, ...] or "
                    "contiguous storage (rewrite it with h5repack -l CONTI)",
                    where, shape_text(chunk)));
  if (H5_CHECK(H5Pget_nfilters(dcpl)) > 0)
    throw UserError(
        fmt::format("{} is compressed or filtered, which the reader thread cannot decode: rewrite "
                    "it without filters (h5repack -f NONE)",
                    where));
  std::vector<hsize_t> coord(static_cast<size_t>(rank), 0);
  for (size_t r = 0; r < offset.size(); ++r) {
    coord[0] = r;
    unsigned mask = 0;
    haddr_t addr = HADDR_UNDEF;
    hsize_t size = 0;
    H5_CHECK(H5Dget_chunk_info_by_coord(dataset, coord.data(), &mask, &addr, &size));
    if (addr == HADDR_UNDEF) throw UserError(fmt::format("{}: sample {} was never written", where, r));
    if (size != bytes)
      throw UserError(fmt::format("{}: sample {} occupies {} bytes, expected {}", where, r, size, bytes));
    offset[r] = addr;
  }
}

// Appends the byte offsets of the samples of `name` in `file` to `column`; returns N.
int64_t scan_field(hid_t file, const std::string& path, uint64_t file_size, const std::string& name,
                   const std::vector<int64_t>& grid, int64_t values, FieldColumn& column) {
  const std::string where = fmt::format("{}: dataset '{}'", path, name);
  if (!h5::link_exists(file, name)) throw UserError(fmt::format("{} does not exist", where));
  const h5::Dataset dataset = h5::open_dataset(file, name);
  const int bytes_per_value = element_bytes(dataset, where);
  const int64_t n = sample_count(dataset, grid, where);
  const uint64_t bytes = static_cast<uint64_t>(values) * static_cast<uint64_t>(bytes_per_value);
  // Before anything is sized by N: a damaged header can claim any number of samples.
  if (static_cast<uint64_t>(n) > file_size / bytes)
    throw UserError(
        fmt::format("{} claims {} samples of {} bytes, more than the file's {} bytes hold: the file "
                    "is truncated or damaged",
                    where, n, bytes, file_size));
  const h5::PropertyList dcpl(H5_CHECK(H5Dget_create_plist(dataset)));
  std::vector<uint64_t> offset(static_cast<size_t>(n));
  const H5D_layout_t layout = H5Pget_layout(dcpl);
  if (layout == H5D_CONTIGUOUS && H5_CHECK(H5Pget_external_count(dcpl)) == 0) {
    const haddr_t base = H5Dget_offset(dataset);
    if (base == HADDR_UNDEF) throw UserError(fmt::format("{} was never written", where));
    for (size_t r = 0; r < offset.size(); ++r) offset[r] = base + r * bytes;
  } else if (layout == H5D_CHUNKED) {
    chunk_offsets(dataset, dcpl, static_cast<int>(h5::dataset_dims(dataset).size()), bytes, where, offset);
  } else {
    throw UserError(
        fmt::format("{} is stored compact, virtual or in external files: rewrite it contiguous "
                    "(h5repack -l CONTI)",
                    where));
  }
  for (size_t r = 0; r < offset.size(); ++r)
    if (offset[r] + bytes > file_size)
      throw UserError(
          fmt::format("{}: sample {} lies beyond the end of the file ({} bytes): the file is "
                      "truncated",
                      where, r, file_size));
  column.element_bytes.push_back(bytes_per_value);
  column.offset.insert(column.offset.end(), offset.begin(), offset.end());
  return n;
}

uint64_t fnv1a(uint64_t h, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

// The file's records, appended to `index`.
void scan_file(const std::string& path, int32_t k, const std::string& pde, const std::vector<int64_t>& grid,
               DatasetIndex& index) {
  std::error_code ec;
  const uint64_t size = fs::file_size(path, ec);
  if (ec) throw UserError(fmt::format("{}: cannot read it: {}", path, ec.message()));
  h5::quiet();
  const h5::PropertyList fapl = h5::serial_fapl();
  h5::File file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl));
  if (!file.valid())
    throw UserError(
        fmt::format("{} is not a readable HDF5 file (truncated or damaged?): {}", path, h5::error_stack()));
  if (h5::has_attribute(file, "pde")) {
    const std::string stored = h5::read_string_attribute(file, "pde");
    if (stored != pde)
      throw UserError(
          fmt::format("{} holds samples of {}, but the deck's problem.pde is {}", path, stored, pde));
  }
  const int64_t n = scan_field(file, path, size, index.input.name, grid, index.sample_values, index.input);
  const int64_t m = scan_field(file, path, size, index.target.name, grid, index.sample_values, index.target);
  if (n != m)
    throw UserError(fmt::format("{}: '{}' holds {} samples but '{}' holds {}", path, index.input.name, n,
                                index.target.name, m));
  index.file_of.insert(index.file_of.end(), static_cast<size_t>(n), k);
  const std::string base = fs::path(path).filename().string();
  index.fingerprint = fnv1a(index.fingerprint, base.data(), base.size());
  index.fingerprint = fnv1a(index.fingerprint, &n, sizeof n);
  if (h5::link_exists(file, "/sample_index")) {
    const auto ids = h5::read_dataset_as<int64_t>(file, "/sample_index", H5T_NATIVE_INT64);
    index.fingerprint = fnv1a(index.fingerprint, ids.data(), ids.size() * sizeof(int64_t));
  }
}

}  // namespace

namespace {

// The scan itself, in this process; `started(k)` is told before file k is opened.
DatasetIndex scan_here(const std::vector<std::string>& files, const std::string& input,
                       const std::string& target, const std::vector<int64_t>& grid, const std::string& pde,
                       const std::function<void(size_t)>& started) {
  DatasetIndex index;
  index.files = files;
  index.input.name = input;
  index.target.name = target;
  index.sample_values = 1;
  for (int64_t g : grid) index.sample_values *= g;
  index.fingerprint = 0xcbf29ce484222325ull;
  for (size_t k = 0; k < files.size(); ++k) {
    started(k);
    try {
      scan_file(files[k], static_cast<int32_t>(k), pde, grid, index);
    } catch (const UserError&) {
      throw;
    } catch (const Error& e) {  // an HDF5 failure inside a file that opened
      throw UserError(fmt::format("{}: cannot be read as a dataset: {}", files[k], e.what()));
    }
  }
  return index;
}

// Writes all of `text` to `fd` (a pipe), as the child's only way to talk.
void write_all(int fd, const std::string& text) {
  for (size_t done = 0; done < text.size();) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) _exit(3);
    done += static_cast<size_t>(n);
  }
}

// The child's reply: progress lines "F<k>", then one "O|E|X<length>" line and that many bytes.
std::string read_reply(int fd) {
  std::string reply;
  char buffer[65536];
  while (true) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    reply.append(buffer, static_cast<size_t>(n));
  }
  return reply;
}

// The child: scans, answers on `fd`, ends with _exit.
[[noreturn]] void scan_in_child(int fd, const std::vector<std::string>& files, const std::string& input,
                                const std::string& target, const std::vector<int64_t>& grid,
                                const std::string& pde) {
  std::string message;
  char kind = 'O';
  try {
    message = serialize(scan_here(files, input, target, grid, pde,
                                  [&](size_t k) { write_all(fd, fmt::format("F{}\n", k)); }));
  } catch (const UserError& e) {
    kind = 'E', message = e.what();
  } catch (const std::exception& e) {
    kind = 'X', message = e.what();
  }
  write_all(fd, fmt::format("{}{}\n", kind, message.size()) + message);
  ::close(fd);
  _exit(0);
}

}  // namespace

// HDF5 1.10 can crash (SIGSEGV) on a file damaged in its metadata, which no check before opening it
// can rule out; a crash would end the whole job without a word of which file. So the scan runs in
// a forked child, which reports each file as it starts it and then the index or the refusal; the
// parent turns a child killed by a signal into a UserError naming the file it was reading. The
// child calls no MPI and ends with _exit.
DatasetIndex scan_dataset(const std::vector<std::string>& files, const std::string& input,
                          const std::string& target, const std::vector<int64_t>& grid,
                          const std::string& pde) {
  int fds[2];
  if (::pipe(fds) != 0) throw IoError(fmt::format("pipe for the dataset scan: {}", std::strerror(errno)));
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]), ::close(fds[1]);
    throw IoError(fmt::format("fork for the dataset scan: {}", std::strerror(errno)));
  }
  if (pid == 0) {
    ::close(fds[0]);
    scan_in_child(fds[1], files, input, target, grid, pde);
  }
  ::close(fds[1]);
  const std::string reply = read_reply(fds[0]);
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  size_t at = 0, last_file = 0;
  while (at < reply.size() && reply[at] == 'F') {
    const size_t end = reply.find('\n', at);
    if (end == std::string::npos) break;
    last_file = std::stoul(reply.substr(at + 1, end - at - 1));
    at = end + 1;
  }
  const size_t line_end = reply.find('\n', at);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || at >= reply.size() || line_end == std::string::npos) {
    const std::string file = last_file < files.size() ? files[last_file] : std::string("the dataset");
    throw UserError(fmt::format("{}: reading it crashed the HDF5 library ({}): the file is damaged", file,
                                WIFSIGNALED(status) ? strsignal(WTERMSIG(status)) : "no answer"));
  }
  const char kind = reply[at];
  const std::string body = reply.substr(line_end + 1);
  if (kind == 'O') return deserialize(body);
  if (kind == 'E') throw UserError(body);
  throw Error(body);
}

namespace {

struct Packer {
  std::string bytes;
  template <class T>
  void put(const T& v) {
    bytes.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  template <class T>
  void put_vector(const std::vector<T>& v) {
    put(static_cast<uint64_t>(v.size()));
    bytes.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
  }
  void put_string(const std::string& s) {
    put(static_cast<uint64_t>(s.size()));
    bytes += s;
  }
};

struct Unpacker {
  const std::string& bytes;
  size_t at = 0;
  template <class T>
  T get() {
    T v;
    PDEGEN_CHECK(at + sizeof v <= bytes.size(), "dataset index: message too short");
    std::memcpy(&v, bytes.data() + at, sizeof v);
    at += sizeof v;
    return v;
  }
  template <class T>
  std::vector<T> get_vector() {
    const auto n = get<uint64_t>();
    PDEGEN_CHECK(at + n * sizeof(T) <= bytes.size(), "dataset index: message too short");
    std::vector<T> v(n);
    std::memcpy(v.data(), bytes.data() + at, n * sizeof(T));
    at += n * sizeof(T);
    return v;
  }
  std::string get_string() {
    const auto n = get<uint64_t>();
    PDEGEN_CHECK(at + n <= bytes.size(), "dataset index: message too short");
    std::string s = bytes.substr(at, n);
    at += n;
    return s;
  }
};

void pack(Packer& p, const FieldColumn& c) {
  p.put_string(c.name);
  p.put_vector(c.element_bytes);
  p.put_vector(c.offset);
}

FieldColumn unpack(Unpacker& u) {
  FieldColumn c;
  c.name = u.get_string();
  c.element_bytes = u.get_vector<int>();
  c.offset = u.get_vector<uint64_t>();
  return c;
}

}  // namespace

std::string serialize(const DatasetIndex& index) {
  Packer p;
  p.put(static_cast<uint64_t>(index.files.size()));
  for (const std::string& f : index.files) p.put_string(f);
  p.put_vector(index.file_of);
  p.put(index.sample_values);
  pack(p, index.input);
  pack(p, index.target);
  p.put(index.fingerprint);
  return std::move(p.bytes);
}

DatasetIndex deserialize(const std::string& bytes) {
  Unpacker u{bytes};
  DatasetIndex index;
  index.files.resize(u.get<uint64_t>());
  for (std::string& f : index.files) f = u.get_string();
  index.file_of = u.get_vector<int32_t>();
  index.sample_values = u.get<int64_t>();
  index.input = unpack(u);
  index.target = unpack(u);
  index.fingerprint = u.get<uint64_t>();
  return index;
}

}  // namespace pdegen::data

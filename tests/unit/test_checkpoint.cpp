// Checkpoints: bit-exact round trips (memcmp, including NaN payloads, -0 and denormals), clear
// UserErrors for missing, truncated, damaged, foreign and future files, atomic publication, and
// the step_<N>.h5 directory conventions (latest, prune).
#include <fmt/format.h>
#include <stdlib.h>
#include <sys/resource.h>

#include <algorithm>
#include <bit>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "core/parameter.hpp"
#include "io/checkpoint.hpp"
#include "io/hdf5_util.hpp"
#include "testing.hpp"

using namespace pdegen;
namespace fs = std::filesystem;

namespace {

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "pdegen_ckpt_XXXXXX").string();
    REQUIRE(mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string operator/(const std::string& name) const { return (fs::path(path_) / name).string(); }
  const std::string& str() const { return path_; }

 private:
  std::string path_;
};

// A tensor whose bytes are random bit patterns, then a few awkward values planted at the front.
Tensor random_bits(const Shape& shape, DType dtype, uint64_t stream) {
  Tensor t = Tensor::empty(shape, dtype);
  auto* bytes = static_cast<unsigned char*>(t.raw());
  for (size_t i = 0; i < t.nbytes(); ++i)
    bytes[i] = static_cast<unsigned char>(random_uniform(7, rng_stream::tests + stream, i) * 256);
  if (dtype == DType::f32 && t.numel() >= 5) {
    const uint32_t special[5] = {0x7fc12345u /* NaN with payload */, 0x80000000u /* -0 */, 0x00000001u,
                                 0xff800000u /* -inf */, 0x7f800001u /* signalling NaN */};
    std::memcpy(t.raw(), special, sizeof special);
  }
  if (dtype == DType::f64 && t.numel() >= 2) {
    const uint64_t special[2] = {0x7ff8dead0000beefULL, 0x0000000000000001ULL};
    std::memcpy(t.raw(), special, sizeof special);
  }
  return t;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined()) return a.defined() == b.defined();
  return a.shape() == b.shape() && a.dtype() == b.dtype() && a.nbytes() == b.nbytes() &&
         (a.nbytes() == 0 || std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0);
}

bool same_bits(double a, double b) { return std::bit_cast<uint64_t>(a) == std::bit_cast<uint64_t>(b); }

CheckpointData example() {
  CheckpointData d;
  d.step = 123456789012;
  d.seed = 0xfedcba9876543210ULL;  // above INT64_MAX: must survive as unsigned
  d.next_sample = 987654321;
  d.deck_yaml = "problem:\n  pde: poisson2d  # ünïcode, \"quotes\", tabs\t\n";
  d.deck_yaml += std::string(100000, 'x');  // beyond HDF5's 64 KiB compact attribute limit
  d.parameters = random_bits({1000}, DType::f32, 1);
  // Deliberately not in alphabetical order: the order written is the order read.
  d.optimizer_state = {{"m", random_bits({1000}, DType::f32, 2)},
                       {"v", random_bits({1000}, DType::f32, 3)},
                       {"lbfgs.history", random_bits({3, 7}, DType::f64, 4)},
                       {"empty", Tensor::empty({0}, DType::f32)},
                       {"half", random_bits({5}, DType::f16, 5)},
                       {"bf", random_bits({2, 2}, DType::bf16, 6)}};
  d.buffers = {{"enc1.bn.running_var", random_bits({16}, DType::f32, 7)},
               {"enc0.bn.running_mean", random_bits({16}, DType::f32, 8)}};
  d.scalars = {{"wall_time", 12.5},
               {"loss_scale", 65536.0},
               {"best_loss", std::numeric_limits<double>::quiet_NaN()},
               {"tiny", std::numeric_limits<double>::denorm_min()},
               {"minus_zero", -0.0},
               {"a_last", -std::numeric_limits<double>::infinity()}};
  d.parameter_layout = "enc0.conv0.weight [16, 1, 3, 3] 0\nenc0.conv0.bias [16] 144\n";
  return d;
}

void check_equal(const CheckpointData& a, const CheckpointData& b) {
  CHECK(a.format_version == b.format_version);
  CHECK(a.step == b.step);
  CHECK(a.seed == b.seed);
  CHECK(a.next_sample == b.next_sample);
  CHECK(a.deck_yaml == b.deck_yaml);
  CHECK(a.parameter_layout == b.parameter_layout);
  CHECK(same_bits(a.parameters, b.parameters));
  for (auto [x, y] : {std::pair{&a.optimizer_state, &b.optimizer_state}, std::pair{&a.buffers, &b.buffers}}) {
    REQUIRE(x->size() == y->size());
    for (size_t i = 0; i < x->size(); ++i) {
      CAPTURE((*x)[i].first);
      CHECK((*x)[i].first == (*y)[i].first);
      CHECK(same_bits((*x)[i].second, (*y)[i].second));
    }
  }
  REQUIRE(a.scalars.size() == b.scalars.size());
  for (size_t i = 0; i < a.scalars.size(); ++i) {
    CAPTURE(a.scalars[i].first);
    CHECK(a.scalars[i].first == b.scalars[i].first);
    CHECK(same_bits(a.scalars[i].second, b.scalars[i].second));
  }
}

std::vector<char> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void touch(const std::string& path) { std::ofstream(path) << "x"; }

}  // namespace

TEST_CASE("checkpoint round trip is bit-exact for parameters, state, buffers, scalars and strings") {
  TempDir dir;
  const CheckpointData written = example();
  const std::string path = dir / "checkpoints/step_00000007.h5";  // the directory is created
  write_checkpoint(path, written);
  check_equal(read_checkpoint(path), written);
}

TEST_CASE("blocked tensors are stored in logical order and come back plain") {
  TempDir dir;
  CheckpointData d;
  const testing::Vec values = testing::random_vec(2 * 32 * 3 * 3, 9);
  const Tensor plain = testing::tensor_from(values, {2, 32, 3, 3});
  d.buffers = {{"blocked", to_channel_block(plain, 16)}};
  write_checkpoint(dir / "c.h5", d);
  const CheckpointData back = read_checkpoint(dir / "c.h5");
  REQUIRE(back.buffers.size() == 1);
  CHECK(back.buffers[0].second.is_plain());
  CHECK(same_bits(back.buffers[0].second, plain));
  CHECK(!back.parameters.defined());  // an unset tensor stays unset
}

TEST_CASE("a missing checkpoint is a UserError naming the file") {
  TempDir dir;
  CHECK_THROWS_WITH_AS(read_checkpoint(dir / "step_00000001.h5"),
                       doctest::Contains("step_00000001.h5' does not exist"), UserError);
}

TEST_CASE("a truncated checkpoint is a UserError naming the file") {
  TempDir dir;
  write_checkpoint(dir / "full.h5", example());
  const std::vector<char> bytes = read_bytes(dir / "full.h5");
  for (size_t keep : {size_t{0}, size_t{100}, bytes.size() / 2, bytes.size() - 1}) {
    CAPTURE(keep);
    write_bytes(dir / "cut.h5", std::vector<char>(bytes.begin(), bytes.begin() + static_cast<long>(keep)));
    CHECK_THROWS_WITH_AS(read_checkpoint(dir / "cut.h5"), doctest::Contains("cut.h5"), UserError);
  }
}

TEST_CASE("a damaged checkpoint (flipped data bits) is caught by the checksums") {
  TempDir dir;
  CheckpointData d;
  d.parameters = testing::tensor_from(testing::random_vec(4096, 10), {4096});
  write_checkpoint(dir / "c.h5", d);
  std::vector<char> bytes = read_bytes(dir / "c.h5");
  // Find the parameter values in the file and flip one bit in the middle of them.
  const char* first = static_cast<const char*>(d.parameters.raw());
  auto at = std::search(bytes.begin(), bytes.end(), first, first + 64);
  REQUIRE(at != bytes.end());
  *(at + 8000) ^= 0x10;
  write_bytes(dir / "c.h5", bytes);
  CHECK_THROWS_WITH_AS(read_checkpoint(dir / "c.h5"), doctest::Contains("damaged"), UserError);
}

TEST_CASE("a checkpoint of another format version is refused with a UserError") {
  TempDir dir;
  CheckpointData d = example();
  d.format_version = 3;
  write_checkpoint(dir / "future.h5", d);
  CHECK_THROWS_WITH_AS(read_checkpoint(dir / "future.h5"),
                       doctest::Contains("has format version 3; this pdegen reads versions 1 to 2"),
                       UserError);
}

TEST_CASE("a flipped byte in the stored deck is caught by the file's CRC") {
  TempDir dir;
  CheckpointData d = example();
  d.deck_yaml = "optimizer:\n  weight_decay: 0.0\n";
  write_checkpoint(dir / "c.h5", d);
  std::vector<char> bytes = read_bytes(dir / "c.h5");
  const std::string needle = "weight_decay: 0.0";
  auto at = std::search(bytes.begin(), bytes.end(), needle.begin(), needle.end());
  REQUIRE(at != bytes.end());
  *(at + static_cast<long>(needle.size()) - 3) = '1';  // 0.0 -> 1.0
  write_bytes(dir / "c.h5", bytes);
  CHECK_THROWS_WITH_AS(read_checkpoint(dir / "c.h5"), doctest::Contains("CRC-32 does not match"), UserError);
}

TEST_CASE("files without the CRC header: version 1 is read, a later version is refused as damaged") {
  TempDir dir;
  for (int version : {1, 2}) {
    CAPTURE(version);
    CheckpointData d = example();
    d.format_version = version;
    write_checkpoint(dir / "c.h5", d);
    std::vector<char> bytes = read_bytes(dir / "c.h5");
    write_bytes(dir / "c.h5", std::vector<char>(bytes.begin() + 512, bytes.end()));  // the bare HDF5 file
    if (version == 1)
      check_equal(read_checkpoint(dir / "c.h5"), d);
    else
      CHECK_THROWS_WITH_AS(read_checkpoint(dir / "c.h5"), doctest::Contains("header is missing"), UserError);
  }
}

TEST_CASE("a write that the file system refuses (file size limit) is an IoError, leaving nothing behind") {
  TempDir dir;
  const std::string path = dir / "step_00000010.h5";
  const CheckpointData good = example();
  write_checkpoint(path, good);
  rlimit old{};
  REQUIRE(getrlimit(RLIMIT_FSIZE, &old) == 0);
  rlimit small = old;
  small.rlim_cur = 4096;
  auto* previous = std::signal(SIGXFSZ, SIG_IGN);  // the write then fails with EFBIG instead
  REQUIRE(setrlimit(RLIMIT_FSIZE, &small) == 0);
  CheckpointData big = example();
  big.parameters = testing::tensor_from(testing::random_vec(1 << 16, 3), {1 << 16});
  CHECK_THROWS_WITH_AS(write_checkpoint(path, big), doctest::Contains("cannot write"), IoError);
  setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, previous);
  CHECK_FALSE(fs::exists(path + ".tmp"));
  check_equal(read_checkpoint(path), good);
}

TEST_CASE("an HDF5 file that is not a checkpoint, or no HDF5 file at all, is refused with a UserError") {
  TempDir dir;
  {
    h5::File f = h5::create_file(dir / "other.h5");
    h5::write_string_attribute(f, "something", "else");
  }
  CHECK_THROWS_WITH_AS(read_checkpoint(dir / "other.h5"), doctest::Contains("not a pdegen checkpoint"),
                       UserError);
  std::ofstream(dir / "text.h5") << "just some text, long enough to look like a file header........";
  CHECK_THROWS_WITH_AS(read_checkpoint(dir / "text.h5"), doctest::Contains("text.h5"), UserError);
  CHECK_THROWS_WITH_AS(read_checkpoint(dir.str()), doctest::Contains("is not a file"), UserError);
}

TEST_CASE("a failed write leaves the previous checkpoint intact and no temporary file") {
  TempDir dir;
  const std::string path = dir / "step_00000010.h5";
  const CheckpointData good = example();
  write_checkpoint(path, good);
  CheckpointData bad = example();
  bad.buffers.emplace_back("a/b", Tensor::zeros({3}));  // refused half way through the write
  CHECK_THROWS_AS(write_checkpoint(path, bad), Error);
  CHECK_FALSE(fs::exists(path + ".tmp"));
  check_equal(read_checkpoint(path), good);
}

TEST_CASE("checkpoint_file_name pads the step to 8 digits") {
  CHECK(checkpoint_file_name(0) == "step_00000000.h5");
  CHECK(checkpoint_file_name(1200) == "step_00001200.h5");
  CHECK(checkpoint_file_name(123456789) == "step_123456789.h5");
}

TEST_CASE("latest_checkpoint picks the highest step numerically and ignores unfinished files") {
  TempDir dir;
  CHECK(latest_checkpoint(dir.str()) == "");
  CHECK(latest_checkpoint(dir / "does_not_exist") == "");
  for (const char* name :
       {"step_00000005.h5", "step_00000100.h5", "step_00000020.h5", "step_99999999.h5", "step_100000000.h5",
        "step_200000000.h5.tmp", "step_abc.h5", "step_.h5", "notes.txt", "step_300000000.h5.bak"})
    touch(dir / name);
  CHECK(latest_checkpoint(dir.str()) == dir / "step_100000000.h5");
}

TEST_CASE("prune_checkpoints keeps the newest ones and leaves other files alone") {
  TempDir dir;
  for (int step : {10, 30, 20, 40}) touch(dir / checkpoint_file_name(step));
  touch(dir / "step_00000050.h5.tmp");
  touch(dir / "notes.txt");
  prune_checkpoints(dir.str(), 2);
  CHECK(fs::exists(dir / "step_00000040.h5"));
  CHECK(fs::exists(dir / "step_00000030.h5"));
  CHECK_FALSE(fs::exists(dir / "step_00000020.h5"));
  CHECK_FALSE(fs::exists(dir / "step_00000010.h5"));
  CHECK(fs::exists(dir / "step_00000050.h5.tmp"));
  CHECK(fs::exists(dir / "notes.txt"));
  prune_checkpoints(dir.str(), 0);
  CHECK(latest_checkpoint(dir.str()) == "");
  prune_checkpoints(dir / "does_not_exist", 3);  // nothing to do, no error
}

TEST_CASE("a checkpoint of another network is refused naming the first differing parameter") {
  ParameterRegistry a, b;
  a.add("enc0.conv0.weight", {16, 1, 3, 3}, ParamInit::constant_value(0));
  a.add("enc0.conv0.bias", {16}, ParamInit::constant_value(0));
  b.add("enc0.conv0.weight", {32, 1, 3, 3}, ParamInit::constant_value(0));
  b.add("enc0.conv0.bias", {32}, ParamInit::constant_value(0));
  a.finalize(1);
  b.finalize(1);
  const std::string layout = parameter_layout(a);
  CHECK(layout.find("enc0.conv0.weight [16, 1, 3, 3] ") != std::string::npos);
  CHECK_NOTHROW(check_parameter_layout(layout, parameter_layout(a), "c.h5"));
  CHECK_THROWS_WITH_AS(check_parameter_layout(layout, parameter_layout(b), "c.h5"),
                       doctest::Contains("'enc0.conv0.weight [32, 1, 3, 3]"), UserError);
  CHECK_THROWS_WITH_AS(check_parameter_layout(layout, "", "c.h5"), doctest::Contains("(nothing)"), UserError);
}

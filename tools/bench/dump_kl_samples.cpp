// Prints the log-nu fields pdegen's poisson2d / poisson3d sampler (physics/kl_sampler.hpp) makes for
// given global sample indices, so other implementations (tools/bench/torch_poisson.py) can be checked
// against it (tools/bench/check_kl_samples.py does).
//   dump_kl_samples DECK [key.path=value ...] [--index G]... [--eval E]... [--binary FILE]
// --index G: training/global index G; --eval E: evaluation sample E (global index 2^40 + E).
// Text output (default): one line per sample, "g v(0,0) v(1,0) ... v(n-1,n-1)" in 2D,
// "g v(0,0,0) v(1,0,0) ... v(n-1,n-1,n-1)" in 3D (x fastest, %.9g, so the fp32 values round-trip).
// --binary FILE: the raw fp32 [b, n, n] or [b, n, n, n] array instead, x fastest.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "config/deck.hpp"
#include "core/error.hpp"
#include "physics/kl_sampler.hpp"

using namespace pdegen;

namespace {

constexpr uint64_t evaluation_index_base = uint64_t{1} << 40;

struct Options {
  std::string deck, binary;
  std::vector<std::string> overrides;
  std::vector<uint64_t> indices;
};

[[noreturn]] void usage(const std::string& problem) {
  std::fprintf(stderr,
               "dump_kl_samples: %s\nusage: dump_kl_samples DECK [key.path=value ...] [--index G]... "
               "[--eval E]... [--binary FILE]\n",
               problem.c_str());
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int a = 1; a < argc; ++a) {
    const std::string arg = argv[a];
    auto value = [&]() -> std::string {
      if (a + 1 >= argc) usage("missing value after " + arg);
      return argv[++a];
    };
    if (arg == "--index")
      o.indices.push_back(std::stoull(value()));
    else if (arg == "--eval")
      o.indices.push_back(evaluation_index_base + std::stoull(value()));
    else if (arg == "--binary")
      o.binary = value();
    else if (arg.rfind("--", 0) == 0)
      usage("unknown option " + arg);
    else if (o.deck.empty())
      o.deck = arg;
    else
      o.overrides.push_back(arg);
  }
  if (o.deck.empty()) usage("missing DECK");
  if (o.indices.empty()) usage("no sample: give --index G or --eval E");
  return o;
}

template <int Dim>
Tensor sample(const Deck& deck, const std::vector<uint64_t>& indices) {
  const KlSampler<Dim> sampler(deck.problem.poisson, deck.problem.resolution);
  Tensor log_nu;
  sampler.sample(deck.training.seed, indices, log_nu);
  return log_nu;
}

void run(const Options& o) {
  const Deck deck = load_deck(o.deck, o.overrides);
  if (!deck.problem.is_poisson())
    throw UserError("dump_kl_samples: the deck's pde must be poisson2d or poisson3d");
  const int dims = deck.problem.spatial_dims();
  const Tensor log_nu = dims == 3 ? sample<3>(deck, o.indices) : sample<2>(deck, o.indices);
  const float* v = log_nu.data<float>();
  int64_t per_sample = 1;
  for (int d = 0; d < dims; ++d) per_sample *= deck.problem.resolution;
  if (!o.binary.empty()) {
    std::FILE* f = std::fopen(o.binary.c_str(), "wb");
    if (!f) throw UserError("dump_kl_samples: cannot write " + o.binary);
    const size_t count = static_cast<size_t>(per_sample) * o.indices.size();
    const bool ok = std::fwrite(v, sizeof(float), count, f) == count;
    if (std::fclose(f) != 0 || !ok) throw UserError("dump_kl_samples: writing " + o.binary + " failed");
    return;
  }
  for (size_t s = 0; s < o.indices.size(); ++s) {
    std::printf("%llu", static_cast<unsigned long long>(o.indices[s]));
    for (int64_t k = 0; k < per_sample; ++k)
      std::printf(" %.9g", static_cast<double>(v[static_cast<int64_t>(s) * per_sample + k]));
    std::printf("\n");
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    run(parse(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}

// Prints the log-nu fields pdegen's poisson2d sampler (physics/kl_sampler.hpp) makes for given global
// sample indices, so other implementations (tools/bench/torch_poisson2d.py) can be checked against it.
//   dump_kl_samples DECK [key.path=value ...] [--index G]... [--eval E]... [--binary FILE]
// --index G: training/global index G; --eval E: evaluation sample E (global index 2^40 + E).
// Text output (default): one line per sample, "g v(0,0) v(1,0) ... v(n-1,n-1)" (x fastest, %.9g, so
// the fp32 values round-trip). --binary FILE: the raw fp32 [b, n, n] array instead, x fastest.
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

void run(const Options& o) {
  const Deck deck = load_deck(o.deck, o.overrides);
  if (deck.problem.pde != PdeKind::poisson2d)
    throw UserError("dump_kl_samples: the deck's pde must be poisson2d");
  const KlSampler2D sampler(deck.problem.poisson, deck.problem.resolution);
  Tensor log_nu;
  sampler.sample(deck.training.seed, o.indices, log_nu);
  const float* v = log_nu.data<float>();
  const int64_t per_sample = int64_t{deck.problem.resolution} * deck.problem.resolution;
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

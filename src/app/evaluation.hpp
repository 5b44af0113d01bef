// Held-out samples and what every verb does with them: the evaluation set of `train`, the new
// samples of `predict` and the reference solutions of `solve` are one kind of set (a range of global
// indices, shared over the ranks, with inputs and reference solutions), evaluated and written to a
// fields file by the same functions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "app/model.hpp"
#include "io/fields_file.hpp"
#include "parallel/communicator.hpp"
#include "physics/problem.hpp"

namespace pdegen::app {

struct SampleSet {
  int64_t total = 0;              // samples over all ranks
  Share share;                    // this rank's [begin, end) of them
  std::vector<uint64_t> indices;  // this rank's global indices: index_base + share
  Tensor input, reference;        // this rank's samples (the batch shape with 0 rows when none)
  ReferenceReport report;         // of this rank's reference solves
  bool has_reference = true;      // false: `reference` is not computed (predict --no-reference)
};

// Samples index_base + [0, total) over the ranks, with their reference solutions unless
// `with_reference` is false.
SampleSet make_sample_set(const Problem& problem, uint64_t seed, uint64_t index_base, int64_t total,
                          const Communicator& comm, bool with_reference = true);

// The network's output for host `input` as the problem's solution (lifted), on the host, `batch`
// samples per forward so that memory stays bounded however many samples there are. With mixed
// precision the network runs in `precision`; the result is fp32.
Tensor predict(Model& model, const Problem& problem, const Tensor& input, DType precision, int64_t batch);

// The problem's error metric over a set, for predictions of this rank's samples.
struct ErrorSummary {
  double mean = 0, max = 0;
  int64_t samples = 0;
  std::vector<double> per_sample;  // every sample's error, on every rank (when asked for)
};
ErrorSummary summarize_error(const Problem& problem, const SampleSet& set, const Tensor& prediction,
                             const Communicator& comm, bool per_sample = false);

// This rank's rows of `t` (a tensor of this rank's samples of the set) among the set's first
// `count` samples: what a fields file of `count` samples takes from this rank.
Tensor first_rows(const SampleSet& set, const Tensor& t, int64_t count);

// What a fields file of the problem's samples needs: the grid (nodes per axis, slowest first), the
// metadata, and channel 0 of one sample of an input (the field the file names; the others are
// coordinates) as a [1, 1, grid...] view of a plain host tensor.
std::vector<int64_t> sample_grid(const Problem& problem);
FieldsMetadata fields_metadata(const Problem& problem, const std::string& deck_yaml);
Tensor channel0_view(const Tensor& t, int64_t row);

// Writes the first `count` samples of the set to `file` (and its XDMF) collectively: the input, then,
// with `prediction` (this rank's first_rows of the predictions), the prediction and, when the set has
// references, its error and u_ref. Returns the XDMF path.
std::string write_set_fields(const std::string& file, const Problem& problem, const SampleSet& set,
                             int64_t count, const Tensor* prediction, const std::string& deck_yaml,
                             const Communicator& comm);

}  // namespace pdegen::app

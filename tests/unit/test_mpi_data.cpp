// Training from data on P ranks (run alone and under mpiexec.mpich -n 2, 3, 4): each rank loads its
// share of every micro-batch through the DataObjective, exactly as the Trainer asks for it, and the
// records it gets (read back from the values, which name their record) are gathered. Every training
// record is seen exactly once per epoch over all ranks, in the epoch's seeded order, whatever P,
// the micro-batches and a batch that straddles two epochs; held-out records never; a rank that fails
// to read the dataset index makes every rank fail with the same error.
#include <mpi.h>

#include <filesystem>

#include "app/data_objective.hpp"
#include "app/trainer.hpp"
#include "core/error.hpp"
#include "data/epoch_order.hpp"
#include "data_files.hpp"
#include "mpi_session.hpp"
#include "testing.hpp"

using namespace pdegen;
using namespace pdegen::app;
namespace fs = std::filesystem;

namespace {

// One directory for all ranks, with the dataset (rank 0 writes it), removed at the end.
struct SharedData {
  std::string dir;
  SharedData(int64_t samples) {
    const Communicator comm(testing::mpi_world());
    if (comm.rank() == 0) {
      dir = (fs::temp_directory_path() / "pdegen_mpi_data_XXXXXX").string();
      REQUIRE(mkdtemp(dir.data()) != nullptr);
      testing::DataFileSpec spec;
      spec.grid = {8, 8};
      spec.samples = samples - 4;
      testing::write_data_file(dir + "/part_0.h5", spec);
      spec.first_record = samples - 4;
      spec.samples = 4;
      testing::write_data_file(dir + "/part_1.h5", spec);
    }
    comm.broadcast(dir);
  }
  ~SharedData() {
    Communicator(testing::mpi_world()).barrier();
    if (Communicator(testing::mpi_world()).rank() == 0) fs::remove_all(dir);
  }
};

Deck data_deck(const std::string& files, int64_t batch, int micro) {
  return parse_deck(
      "output:\n  dir: unused\n", "data test",
      {"problem.pde=poisson2d", "problem.resolution=8", "training.objective=data", "data.files=" + files,
       "data.validation_fraction=0.2", "training.batch_size=" + std::to_string(batch),
       "training.micro_batches=" + std::to_string(micro), "training.seed=11"});
}

}  // namespace

TEST_CASE("data on P ranks: every training record once per epoch, in the epoch's order") {
  const Communicator comm(testing::mpi_world());
  const SharedData shared(15);  // 12 training records, 3 held out
  for (auto [batch, micro] : {std::pair<int64_t, int>{4, 1}, {5, 2}, {3, 3}}) {
    CAPTURE(batch);
    CAPTURE(micro);
    const Deck deck = data_deck(shared.dir + "/part_*.h5", batch, micro);
    const auto problem = make_problem(deck.problem, deck.evaluation);
    const data::DatasetIndex index = load_dataset_index(deck.data, *problem, comm);
    DataObjective objective(*problem, deck, index);
    REQUIRE(objective.training_records() == 12);
    CHECK(objective.validation_records() == 3);
    const int64_t steps = 10;  // 3.3 epochs for batch 4: batches cross epoch ends for 5
    std::vector<double> record_at(static_cast<size_t>(steps * batch), 0), seen(record_at.size(), 0);
    Tensor input;
    for (int64_t s = 0; s < steps; ++s)
      for (int m = 0; m < micro; ++m) {
        const Share part = micro_batch_share(batch, m, micro, comm);
        std::vector<uint64_t> ids;
        for (int64_t p = part.begin; p < part.end; ++p) ids.push_back(static_cast<uint64_t>(s * batch + p));
        if (ids.empty()) continue;
        objective.will_need(ids);  // read ahead as the Trainer does, then take it
        objective.inputs(0, ids, input);
        for (size_t k = 0; k < ids.size(); ++k) {
          record_at[ids[k]] += std::round(input.data<float>()[k * 64]);  // node 0 holds the record
          seen[ids[k]] += 1;
        }
      }
    comm.allreduce_sum(record_at.data(), static_cast<int64_t>(record_at.size()));
    comm.allreduce_sum(seen.data(), static_cast<int64_t>(seen.size()));
    int wrong = 0, missed = 0;
    for (size_t g = 0; g < seen.size(); ++g) {
      missed += seen[g] != 1;
      wrong += record_at[g] != static_cast<double>(data::epoch_permutation(12, 11, g / 12, true)[g % 12]);
    }
    CHECK(missed == 0);
    CHECK(wrong == 0);
    // Each full epoch holds every training record once (the permutation says so; checked here as a set).
    for (size_t e = 0; (e + 1) * 12 <= seen.size(); ++e) {
      std::vector<double> epoch(record_at.begin() + static_cast<int64_t>(e * 12),
                                record_at.begin() + static_cast<int64_t>((e + 1) * 12));
      std::sort(epoch.begin(), epoch.end());
      for (int r = 0; r < 12; ++r) CHECK(epoch[static_cast<size_t>(r)] == r);
    }
  }
}

TEST_CASE("data on P ranks: a bad dataset fails on every rank with rank 0's message") {
  const Communicator comm(testing::mpi_world());
  const SharedData shared(15);
  const Deck deck = data_deck(shared.dir + "/nothing_*.h5", 4, 1);
  const auto problem = make_problem(deck.problem, deck.evaluation);
  CHECK_THROWS_WITH_AS(load_dataset_index(deck.data, *problem, comm), doctest::Contains("matches no file"),
                       UserError);
  const Deck wrong_grid = parse_deck("output:\n  dir: unused\n", "data test",
                                     {"problem.pde=poisson2d", "problem.resolution=16",
                                      "training.objective=data", "data.files=" + shared.dir + "/part_*.h5"});
  const auto p16 = make_problem(wrong_grid.problem, wrong_grid.evaluation);
  CHECK_THROWS_WITH_AS(load_dataset_index(wrong_grid.data, *p16, comm),
                       doctest::Contains("expected [N, 16, 16]"), UserError);
}

// The run directory of `train` belongs to one run: a lock keeps a second run out while the first
// one lives, and a directory holding another run's deck or checkpoints is refused or moved aside
// (output.existing), never mixed into. A restart's checkpoint must come from the same
// configuration (training.allow_deck_changes says otherwise), and a rewind to an earlier
// checkpoint of the directory moves the abandoned trajectory's later files aside.
#pragma once

#include <filesystem>
#include <string>

#include "config/deck.hpp"

namespace pdegen::app {

// An exclusive lock on `<dir>/.lock` (POSIX record lock: it works on NFS and ends with the process,
// even under kill -9). Creates `dir`. Throws UserError naming the holder when another run has it.
class RunLock {
 public:
  RunLock() = default;
  explicit RunLock(const std::filesystem::path& dir);
  ~RunLock();
  RunLock(RunLock&& other) noexcept;
  RunLock& operator=(RunLock&& other) noexcept;
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

 private:
  int fd_ = -1;
};

// Rank 0, lock held: makes `dir` ready for a run that starts from `restart_file` ("" = from
// scratch), whose resolved deck is `deck_yaml`. Throws UserError when `dir` holds another run and
// output.existing is `refuse`; moves it aside (re-taking `lock` on the fresh directory) when it is
// `move_aside`. Removes the `.tmp` files of writers that were killed.
void claim_run_directory(const Deck& deck, const std::string& deck_yaml, const std::string& restart_file,
                         RunLock& lock);

// Rank 0: on a restart from `step` of a checkpoint in this directory, moves its later checkpoints
// and end-of-run files into `<dir>/abandoned-<date>-<time>/`, so `restart: latest` never resumes
// the trajectory that was rewound.
void set_aside_later_trajectory(const std::filesystem::path& dir, int64_t step);

// The checkpoint `file` was written by a run with deck `stored`: throws UserError naming the first
// key that changes the training unless `allow` (then each change is logged as a warning).
void check_restart_deck(const std::string& stored, const std::string& current, const std::string& file,
                        bool allow);
// For predict: a different network is an error, a different problem a warning per key.
void check_prediction_deck(const std::string& stored, const std::string& current, const std::string& file);

}  // namespace pdegen::app

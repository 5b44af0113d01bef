// The keys two resolved decks (to_yaml text) disagree on: what a restart, a prediction or the
// ranks of one job compare before they trust each other's state.
#pragma once

#include <string>
#include <vector>

namespace pdegen {

struct DeckChange {
  std::string key;            // dotted path, e.g. "optimizer.lr"
  std::string before, after;  // the values as written; "(absent)" for a key only one deck has
};

// The differing scalar keys of two decks, in the order of `before` (keys only `after` has last).
// Throws UserError when either text is not YAML.
std::vector<DeckChange> deck_changes(const std::string& before, const std::string& after);

// "optimizer.lr is 0.001 in <before_name>, 0.01 in <after_name>".
std::string describe(const DeckChange& change, const std::string& before_name, const std::string& after_name);

}  // namespace pdegen

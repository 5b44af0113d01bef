// "Did you mean ...?": the valid key nearest to a misspelled one, by edit distance.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pdegen::config {

// Optimal-string-alignment distance (insertions, deletions, substitutions and swaps of neighbours
// cost 1 each), case-insensitive: "stpes" is 1 from "steps", "Base_Chanels" 1 from "base_channels".
size_t edit_distance(std::string_view a, std::string_view b);

// The candidate nearest to `word` when it is near enough to be a plausible typo (at most a third of
// the word's letters, and at least one, changed); ties go to the earlier candidate.
std::optional<std::string> nearest(std::string_view word, const std::vector<std::string>& candidates);

}  // namespace pdegen::config

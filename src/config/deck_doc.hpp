// The key tables of docs/deck.md, written from the records of reading a reference deck (see
// reader.hpp): the description given where a key is read is the one the documentation shows.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "config/reader.hpp"

namespace pdegen::config {

// Reads deck text like parse_deck() (and throws like it) and returns what the readers recorded, in
// reading order.
std::vector<KeyRecord> deck_records(std::string_view text, std::string_view name,
                                    const std::vector<std::string>& overrides = {});

// The deck whose records the documentation lists: the required keys and one `then` phase, so that
// every key is read once (the keys of other pdes and types take their defaults behind their gates).
extern const std::string_view reference_deck;

// The records the documentation lists: a key under `then` that repeats an optimizer key is
// documented once, with the optimizer.
std::vector<KeyRecord> documented_records(const std::vector<KeyRecord>& records);

// The paths of the sections that hold documented keys ("" for the top level).
std::vector<std::string> documented_sections(const std::vector<KeyRecord>& records);

// The Markdown table of the keys directly in `section` (the top-level sections themselves excluded).
std::string key_table(const std::vector<KeyRecord>& records, std::string_view section);

// `markdown` with the text between each "<!-- deck-keys: SECTION -->" line and the next
// "<!-- end deck-keys -->" line replaced by key_table(SECTION) (SECTION "top-level": the top-level
// keys). Throws UserError for an unclosed
// marker or a section without keys.
std::string with_key_tables(std::string_view markdown, const std::vector<KeyRecord>& records);

}  // namespace pdegen::config

// Generating the key tables of docs/deck.md (see deck_doc.hpp).
#include "config/deck_doc.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "core/error.hpp"

namespace pdegen::config {

namespace {

constexpr std::string_view begin_marker = "<!-- deck-keys: ";
constexpr std::string_view end_marker = "<!-- end deck-keys -->";

std::string parent_of(const std::string& path) {
  const size_t dot = path.rfind('.');
  return dot == std::string::npos ? "" : path.substr(0, dot);
}

std::string leaf_of(const std::string& path) {
  const size_t dot = path.rfind('.');
  return dot == std::string::npos ? path : path.substr(dot + 1);
}

// True for "level<k>", a multigrid level section.
bool is_level_word(std::string_view word) {
  return word.size() > 5 && word.starts_with("level") &&
         std::all_of(word.begin() + 5, word.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// The key that `path` repeats, documented once: every `then` step left out (a phase repeats the
// optimizer's keys), every multigrid level<k> as level0.
std::string documented_path(const std::string& path) {
  std::string out;
  size_t start = 0;
  while (start <= path.size()) {
    const size_t dot = std::min(path.find('.', start), path.size());
    const std::string_view word = std::string_view(path).substr(start, dot - start);
    if (word != "then")
      out += fmt::format("{}{}", out.empty() ? "" : ".", is_level_word(word) ? "level0" : word);
    start = dot + 1;
  }
  return out;
}

// A table cell: '|' would end it.
std::string cell(std::string_view text) {
  std::string out;
  for (char c : text) out += c == '|' ? std::string("\\|") : std::string(1, c);
  return out;
}

std::string default_cell(const KeyRecord& r) {
  if (r.required) return "**required**";
  if (!r.default_note.empty()) return r.default_note;
  if (r.type == "section") return "";
  return fmt::format("`{}`", r.default_value);
}

}  // namespace

const std::string_view reference_deck =
    "problem: {pde: poisson2d, resolution: 64}\n"
    "optimizer: {then: {after_steps: 1000}}\n"
    "training: {objective: data}\n"
    "data: {files: dataset_00000.h5}\n"
    "multigrid: {levels: 2}\n";

std::vector<KeyRecord> documented_records(const std::vector<KeyRecord>& records) {
  std::vector<KeyRecord> out;
  auto documented = [&](const std::string& path) {
    return std::any_of(out.begin(), out.end(), [&](const KeyRecord& r) { return r.path == path; });
  };
  for (const KeyRecord& r : records) {
    const std::string plain = documented_path(r.path);
    if (documented(r.path) || (plain != r.path && documented(plain))) continue;
    out.push_back(r);
  }
  return out;
}

std::vector<std::string> documented_sections(const std::vector<KeyRecord>& records) {
  std::vector<std::string> sections;
  for (const KeyRecord& r : documented_records(records)) {
    if (r.type == "section" && parent_of(r.path).empty()) continue;
    const std::string parent = parent_of(r.path);
    if (std::find(sections.begin(), sections.end(), parent) == sections.end()) sections.push_back(parent);
  }
  return sections;
}

std::string key_table(const std::vector<KeyRecord>& records, std::string_view section) {
  std::vector<KeyRecord> rows;
  for (const KeyRecord& r : documented_records(records))
    if (parent_of(r.path) == section && !(r.type == "section" && section.empty())) rows.push_back(r);
  const bool gated =
      std::any_of(rows.begin(), rows.end(), [](const KeyRecord& r) { return !r.only_for.empty(); });
  std::string table =
      gated ? "| key | type | default | allowed | only for | meaning |\n|---|---|---|---|---|---|\n"
            : "| key | type | default | allowed | meaning |\n|---|---|---|---|---|\n";
  for (const KeyRecord& r : rows) {
    table += fmt::format("| `{}` | {} | {} | {} |", leaf_of(r.path), r.type, cell(default_cell(r)),
                         cell(r.allowed));
    if (gated) table += fmt::format(" {} |", cell(r.only_for));
    table += fmt::format(" {} |\n", cell(r.meaning));
  }
  return table;
}

std::string with_key_tables(std::string_view markdown, const std::vector<KeyRecord>& records) {
  std::string out;
  size_t pos = 0;
  while (true) {
    const size_t begin = markdown.find(begin_marker, pos);
    if (begin == std::string_view::npos) break;
    const size_t line_end = markdown.find('\n', begin);
    const size_t close = markdown.find(" -->", begin);
    const size_t end = markdown.find(end_marker, begin);
    if (line_end == std::string_view::npos || close > line_end || end == std::string_view::npos)
      throw UserError(fmt::format("'{}' without a closing '{}'", markdown.substr(begin, 40), end_marker));
    std::string section(markdown.substr(begin + begin_marker.size(), close - begin - begin_marker.size()));
    if (section == "top-level") section.clear();
    const auto sections = documented_sections(records);
    if (std::find(sections.begin(), sections.end(), section) == sections.end())
      throw UserError(fmt::format("'{}{} -->': no deck keys in that section", begin_marker, section));
    out += markdown.substr(pos, line_end + 1 - pos);
    out += key_table(records, section);
    pos = end;
  }
  out += markdown.substr(pos);
  return out;
}

}  // namespace pdegen::config

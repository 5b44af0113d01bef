// The resolved deck as YAML: written from the records the section readers leave when they run over
// a Deck's values (config/reader.hpp), so every key with its effective value comes out in reading
// order, only the keys that apply to the chosen pde and types, and parse_deck() reads back the same Deck.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <string>

#include "config/deck.hpp"
#include "config/reader.hpp"
#include "config/section_readers.hpp"

namespace pdegen {

namespace config {

// Shortest text that reads back as the same double, with a '.' so it reads as a float to people.
std::string yaml_number(double v) {
  std::string s = fmt::format("{}", v);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

namespace {

// The words YAML reads as null or a boolean.
bool yaml_keyword(const std::string& s) {
  for (const char* special :
       {"null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE", "yes", "Yes", "YES", "no",
        "No",   "NO",   "on",   "On",   "ON",   "off",  "Off",   "OFF",   "y",     "Y",   "n",   "N"})
    if (s == special) return true;
  return false;
}

// True when `s` cannot be mistaken for anything but a word or path.
bool plain_word(const std::string& s) {
  bool plain = !s.empty() &&
               (std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '/' || s[0] == '.' || s[0] == '_');
  for (char c : s)
    plain = plain &&
            (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '/' || c == '-');
  return plain && !yaml_keyword(s);
}

}  // namespace

// Plain when it cannot be mistaken for anything but a word or path, double-quoted otherwise.
std::string yaml_string(const std::string& s) {
  if (plain_word(s)) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\')
      out += fmt::format("\\{}", c);
    else if (static_cast<unsigned char>(c) < 0x20)
      out += fmt::format("\\x{:02x}", static_cast<unsigned>(c));
    else
      out += c;
  }
  return out + "\"";
}

std::string resolved_yaml(const std::vector<KeyRecord>& records) {
  std::string text;
  for (const KeyRecord& r : records) {
    if (!r.applies || !r.written) continue;
    const auto depth = std::count(r.path.begin(), r.path.end(), '.');
    const size_t dot = r.path.rfind('.');
    const std::string_view leaf = std::string_view(r.path).substr(dot == std::string::npos ? 0 : dot + 1);
    text.append(static_cast<size_t>(2 * depth), ' ');
    text += r.type == "section" ? fmt::format("{}:\n", leaf) : fmt::format("{}: {}\n", leaf, r.value);
  }
  return text;
}

}  // namespace config

std::string to_yaml(const Deck& deck) {
  config::ReadContext context("resolved deck", /*describing=*/true);
  config::Section top(context, "", YAML::Node(), YAML::Mark::null_mark());
  Deck copy = deck;
  config::read_deck(top, copy);
  return config::resolved_yaml(context.records());
}

}  // namespace pdegen

// The deck reading layer. A Section wraps one YAML mapping; every key a section reader asks for is
// marked as used and remembered as a valid key, so whatever is left unused after the reader ran is
// an unknown key, reported with its line and column and the nearest valid key. Errors are collected
// in the ReadContext (not thrown one at a time), so a user sees every problem of a deck at once.
// Every read also records the key (type, default, allowed values, meaning, effective value) in the
// ReadContext, so the line that reads a key is the only place that describes it: the resolved deck
// and the key tables of docs/deck.md are written from these records.
#pragma once

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/choices.hpp"

namespace pdegen::config {

// An override as applied: its command-line text and the key path it set.
struct AppliedOverride {
  std::string text;
  std::vector<std::string> path;
};

// What the documentation says about a key: its meaning, plus what its type and range do not say.
// Converts from the meaning alone: s.number("lr", c.lr, above(0), "learning rate").
struct Doc {
  Doc(const char* meaning_text) : meaning(meaning_text) {}  // NOLINT(google-explicit-constructor)
  // A condition that involves other keys, added to the allowed values ("needs momentum > 0").
  Doc allowed(const char* text) const {
    Doc d = *this;
    d.allowed_also = text;
    return d;
  }
  // The documented default when it depends on other keys (the recorded one is this deck's).
  Doc default_is(const char* text) const {
    Doc d = *this;
    d.default_text = text;
    return d;
  }
  std::string_view meaning;
  std::string_view allowed_also;
  std::string_view default_text;
};

// One key (or section) as a reader asked for it, in reading order.
struct KeyRecord {
  std::string path;           // "optimizer.schedule.type"
  std::string type;           // int, float, bool, string, choice or section
  std::string value;          // the effective value as YAML text (empty for a section)
  std::string default_value;  // the fallback as YAML text
  bool required = false;      // no default: the deck must set it
  std::string allowed;        // Markdown: "> 0", "`a`, `b`"
  std::string meaning;
  std::string default_note;  // replaces default_value in the documentation when not empty
  std::string only_for;      // the gate around the read ("optimizer type lbfgs"), empty when none
  bool applies = true;       // false: the key belongs to another pde or type and is left out
  bool written = true;       // false: an optional section that this deck does not have
};

// The resolved deck: the records that apply, nested by their paths, in reading order.
std::string resolved_yaml(const std::vector<KeyRecord>& records);

// YAML text that reads back as the same value.
std::string yaml_number(double v);
std::string yaml_string(const std::string& s);

// Where a deck came from and what is wrong with it so far.
class ReadContext {
 public:
  // `describing`: the readers run over the values of a Deck instead of a file (to_yaml): no key
  // is present, every key takes its fallback (the Deck's value), required keys included.
  explicit ReadContext(std::string deck_name, bool describing = false)
      : deck_name_(std::move(deck_name)), describing_(describing) {}

  bool describing() const { return describing_; }
  void record(KeyRecord r) { records_.push_back(std::move(r)); }
  KeyRecord* find_record(std::string_view path);
  const std::vector<KeyRecord>& records() const { return records_; }

  const std::string& deck_name() const { return deck_name_; }
  void add_override(AppliedOverride applied) { overrides_.push_back(std::move(applied)); }

  // "override 'training.steps=x'" when an override set `key_path` (or a section holding it, or a
  // key below it), else "deck.yaml:L:C", or "deck.yaml" when there is no position.
  std::string where(std::string_view key_path, const YAML::Mark& mark) const;

  void error(std::string_view key_path, const YAML::Mark& mark, const std::string& message);
  void error_without_position(const std::string& message);
  void note_valid(std::string key_path) { valid_.push_back(std::move(key_path)); }
  void note_unknown(std::string key_path, const YAML::Mark& mark);

  // Turns unknown keys into errors with suggestions and throws one UserError listing every error
  // (overrides first, then the deck in line order, then missing keys); returns when all is well.
  void throw_if_errors();

 private:
  struct Problem {
    int rank;  // 0: override, 1: deck position, 2: no position
    int line, column;
    std::string text;
  };
  struct Unknown {
    std::string path;
    YAML::Mark mark;
  };
  const AppliedOverride* override_for(std::string_view key_path) const;
  std::string suggestion_for(const std::string& path) const;

  std::string deck_name_;
  bool describing_ = false;
  std::vector<KeyRecord> records_;
  std::vector<AppliedOverride> overrides_;
  std::vector<Problem> problems_;
  std::vector<Unknown> unknown_;
  std::vector<std::string> valid_;
};

// Allowed values of a number: [lo, hi] with either end optionally open or infinite.
struct Range {
  double lo = -std::numeric_limits<double>::infinity();
  double hi = std::numeric_limits<double>::infinity();
  bool lo_open = false;
  bool hi_open = false;
  bool contains(double v) const;
  std::string describe() const;  // ">= 1", "> 0", "in [0, 1)"
  std::string document() const;  // as describe(), "any" when unbounded
};
inline Range at_least(double lo) { return {lo, std::numeric_limits<double>::infinity(), false, false}; }
inline Range above(double lo) { return {lo, std::numeric_limits<double>::infinity(), true, false}; }
inline Range half_open(double lo, double hi) { return {lo, hi, false, true}; }

class Section {
 public:
  // `node` may be undefined or null (an absent or empty section: every key takes its default).
  Section(ReadContext& context, std::string path, const YAML::Node& node, const YAML::Mark& mark);

  const std::string& path() const { return path_; }
  std::string key_path(std::string_view key) const;
  bool has(std::string_view key) const;

  bool describing() const { return context_->describing(); }

  // `range` is what the key means; `largest` is what its type holds (reported separately).
  int64_t integer(std::string_view key, int64_t fallback, Range range, const Doc& doc,
                  int64_t largest = std::numeric_limits<int64_t>::max());
  template <class T>
  T integer_as(std::string_view key, T fallback, Range range, const Doc& doc) {
    return static_cast<T>(
        integer(key, static_cast<int64_t>(fallback), range, doc, std::numeric_limits<T>::max()));
  }
  double number(std::string_view key, double fallback, Range range, const Doc& doc);
  // A non-empty list of integers, each in `range` ("[4, 5, 7]"; a single integer is a list of one).
  std::vector<int> integers(std::string_view key, const std::vector<int>& fallback, Range range,
                            const Doc& doc);
  bool boolean(std::string_view key, bool fallback, const Doc& doc);
  std::string string(std::string_view key, const std::string& fallback, const Doc& doc);
  // A choice key: `fallback` when absent, nothing when its value was reported as an error (a
  // factory key's reader then stops type-checking the keys that depend on it).
  template <class E>
  std::optional<E> try_choice(std::string_view key, E fallback, const Doc& doc);
  template <class E>
  E choice(std::string_view key, E fallback, const Doc& doc) {
    return try_choice<E>(key, fallback, doc).value_or(fallback);
  }
  // A required key's value, or nothing when it is absent (reported with `hint`) or invalid.
  // `fallback` is the value when describing a Deck.
  std::optional<int64_t> required_integer(std::string_view key, int64_t fallback, std::string_view hint,
                                          Range range, const Doc& doc,
                                          int64_t largest = std::numeric_limits<int64_t>::max());
  template <class E>
  std::optional<E> required_choice(std::string_view key, E fallback, std::string_view hint, const Doc& doc) {
    std::optional<E> v;
    if (present(key) || describing()) {
      v = try_choice<E>(key, fallback, doc);
    } else {
      missing(key, hint);
      record(key, "choice", std::string(name_of(fallback)), std::string(name_of(fallback)),
             choice_allowed<E>(), doc);
    }
    mark_required(key);
    return v;
  }
  // `written`: false for an optional section the deck does not have (left out of the resolved deck).
  Section section(std::string_view key, const Doc& doc, bool written = true);
  // The value a reader settled on after reading `key` (a 0 that means "the same as ..."): the
  // resolved deck states it.
  void resolved(std::string_view key, int64_t value);

  // Reports a problem with the value of `key` (at its position, or the section's when absent).
  void fail(std::string_view key, const std::string& message);
  // True unless a problem with `key` was reported: checks that span keys skip keys that failed, so
  // they do not compare with a fallback value the deck never had.
  bool ok(std::string_view key) const;

  // While a Gate with active == false lives, the keys read are the keys of another type: they take
  // their defaults, and a deck that sets one gets "'k' applies only to <applies_to> (<actual>)".
  class Gate {
   public:
    Gate(Section& section, bool active, std::string applies_to, std::string actual);
    ~Gate();
    Gate(const Gate&) = delete;
    Gate& operator=(const Gate&) = delete;

   private:
    Section& section_;
    bool previous_active_;
    std::string previous_applies_to_, previous_actual_, previous_only_for_;
  };

  // Reports the keys nobody asked for. Called once, after the reader asked for every key.
  void finish();

 private:
  struct Entry {
    std::string key;
    YAML::Node key_node;
    YAML::Node value;
    mutable bool used = false;
  };
  const Entry* find(std::string_view key) const;
  bool present(std::string_view key) const { return find(key) != nullptr; }
  void note_valid(std::string_view key);
  void missing(std::string_view key, std::string_view hint);
  // Looks `key` up for reading and marks it used. Returns its entry when there is a value to
  // parse; nullptr when it is absent (fine) or when an error was reported (`failed`): gated off
  // but present, or empty. `expects` describes the wanted value ("a positive integer").
  const Entry* take(std::string_view key, std::string_view expects, bool& failed);
  // The scalar text of `e`, or nothing after reporting that a mapping or list is not `expects`.
  std::optional<std::string> scalar_of(const Entry& e, std::string_view expects);
  YAML::Mark value_mark(const Entry& e) const;
  std::optional<std::string> choice_word(std::string_view key, const std::string& allowed, bool& failed);
  // The parsing behind the public readers, which add the record.
  int64_t read_integer(std::string_view key, int64_t fallback, Range range, int64_t largest);
  double read_number(std::string_view key, double fallback, Range range);
  std::vector<int> read_integers(std::string_view key, const std::vector<int>& fallback, Range range);
  bool read_boolean(std::string_view key, bool fallback);
  std::string read_string(std::string_view key, const std::string& fallback);
  void record(std::string_view key, std::string type, std::string value, std::string fallback,
              std::string allowed, const Doc& doc);
  void mark_required(std::string_view key);
  // "`a`, `b`": the words of a choice key, for the documentation.
  template <class E>
  static std::string choice_allowed() {
    std::string out;
    for (const auto& entry : ChoiceNames<E>::table)
      out += fmt::format("{}`{}`", out.empty() ? "" : ", ", entry.name);
    return out;
  }

  ReadContext* context_;
  std::string path_;
  YAML::Mark mark_;
  std::vector<Entry> entries_;
  std::vector<std::string> failed_;
  bool gate_active_ = true;
  std::string gate_applies_to_, gate_actual_;
  std::string only_for_;  // the innermost gate's applies_to, active or not (for the records)
};

template <class E>
std::optional<E> Section::try_choice(std::string_view key, E fallback, const Doc& doc) {
  bool failed = false;
  auto word = choice_word(key, choice_list<E>(), failed);
  std::optional<E> v;
  if (!failed && !word) v = fallback;
  for (const auto& entry : ChoiceNames<E>::table)
    if (!failed && word && entry.name == *word) v = entry.value;
  if (!failed && word && !v)
    fail(key, fmt::format("'{}' is '{}'; expected one of: {}", key_path(key), *word, choice_list<E>()));
  record(key, "choice", std::string(name_of(v.value_or(fallback))), std::string(name_of(fallback)),
         choice_allowed<E>(), doc);
  return v;
}

}  // namespace pdegen::config

// The deck reading layer. A Section wraps one YAML mapping; every key a section reader asks for is
// marked as used and remembered as a valid key, so whatever is left unused after the reader ran is
// an unknown key, reported with its line and column and the nearest valid key. Errors are collected
// in the ReadContext (not thrown one at a time), so a user sees every problem of a deck at once.
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

// Where a deck came from and what is wrong with it so far.
class ReadContext {
 public:
  explicit ReadContext(std::string deck_name) : deck_name_(std::move(deck_name)) {}

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

  // `range` is what the key means; `largest` is what its type holds (reported separately).
  int64_t integer(std::string_view key, int64_t fallback, Range range = {},
                  int64_t largest = std::numeric_limits<int64_t>::max());
  template <class T>
  T integer_as(std::string_view key, T fallback, Range range = {}) {
    return static_cast<T>(integer(key, static_cast<int64_t>(fallback), range, std::numeric_limits<T>::max()));
  }
  double number(std::string_view key, double fallback, Range range = {});
  bool boolean(std::string_view key, bool fallback);
  std::string string(std::string_view key, const std::string& fallback);
  // A choice key: `fallback` when absent, nothing when its value was reported as an error (a
  // factory key's reader then stops type-checking the keys that depend on it).
  template <class E>
  std::optional<E> try_choice(std::string_view key, E fallback);
  template <class E>
  E choice(std::string_view key, E fallback) {
    return try_choice<E>(key, fallback).value_or(fallback);
  }
  // A required key's value, or nothing when it is absent (reported with `hint`) or invalid.
  std::optional<int64_t> required_integer(std::string_view key, std::string_view hint, Range range = {},
                                          int64_t largest = std::numeric_limits<int64_t>::max());
  template <class E>
  std::optional<E> required_choice(std::string_view key, std::string_view hint) {
    if (!present(key)) {
      missing(key, hint);
      return std::nullopt;
    }
    return try_choice<E>(key, ChoiceNames<E>::table[0].value);
  }
  Section section(std::string_view key);

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
    std::string previous_applies_to_, previous_actual_;
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

  ReadContext* context_;
  std::string path_;
  YAML::Mark mark_;
  std::vector<Entry> entries_;
  std::vector<std::string> failed_;
  bool gate_active_ = true;
  std::string gate_applies_to_, gate_actual_;
};

template <class E>
std::optional<E> Section::try_choice(std::string_view key, E fallback) {
  bool failed = false;
  auto word = choice_word(key, choice_list<E>(), failed);
  if (failed) return std::nullopt;
  if (!word) return fallback;
  for (const auto& entry : ChoiceNames<E>::table)
    if (entry.name == *word) return entry.value;
  fail(key, fmt::format("'{}' is '{}'; expected one of: {}", key_path(key), *word, choice_list<E>()));
  return std::nullopt;
}

}  // namespace pdegen::config

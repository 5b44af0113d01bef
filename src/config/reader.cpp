// The deck reading layer (see reader.hpp): strict scalar parsing, positions, collected errors and
// unknown-key suggestions.
#include "config/reader.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <tuple>

#include "config/suggest.hpp"
#include "core/error.hpp"

namespace pdegen::config {

namespace {

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= path.size()) {
    const size_t dot = path.find('.', start);
    const size_t end = dot == std::string_view::npos ? path.size() : dot;
    parts.emplace_back(path.substr(start, end - start));
    start = end + 1;
  }
  return parts;
}

std::pair<std::string, std::string> split_last(const std::string& path) {
  const size_t dot = path.rfind('.');
  if (dot == std::string::npos) return {"", path};
  return {path.substr(0, dot), path.substr(dot + 1)};
}

bool is_prefix(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  return a.size() <= b.size() && std::equal(a.begin(), a.end(), b.begin());
}

bool has_position(const YAML::Mark& m) { return m.line >= 0 && m.column >= 0; }

// Integers as YAML writes them in decimal: an optional sign and digits, nothing else ("1e3" and
// "10.0" are numbers but not integers).
std::optional<int64_t> parse_integer(std::string_view s) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty() || !(std::isdigit(static_cast<unsigned char>(s.front())) || s.front() == '-'))
    return std::nullopt;
  int64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

// Finite decimal numbers with optional exponent; no hex, inf or nan.
std::optional<double> parse_number(std::string_view s) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty() || s.front() == '+' || (s.front() == '-' && s.size() > 1 && s[1] == '+')) return std::nullopt;
  for (char c : s)
    if (!(std::isdigit(static_cast<unsigned char>(c)) || c == '.' || c == 'e' || c == 'E' || c == '-' ||
          c == '+'))
      return std::nullopt;
  double v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

std::string integer_expectation(const Range& r) {
  if (r.lo >= 1) return "a positive integer";
  if (r.lo >= 0) return "a non-negative integer";
  return "an integer";
}

// How a value that is not what a key wants reads in an error message.
std::string describe_value(const YAML::Node& v) {
  switch (v.Type()) {
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return v.Tag() == "!" ? fmt::format("the quoted string \"{}\"", v.Scalar())
                            : fmt::format("'{}'", v.Scalar());
    default:
      return "an empty value";
  }
}

bool quoted(const YAML::Node& v) { return v.Tag() == "!"; }

}  // namespace

// ---- ReadContext ---------------------------------------------------------------------------

KeyRecord* ReadContext::find_record(std::string_view path) {
  for (auto it = records_.rbegin(); it != records_.rend(); ++it)
    if (it->path == path) return &*it;
  return nullptr;
}

const AppliedOverride* ReadContext::override_for(std::string_view key_path) const {
  const auto path = split_path(key_path);
  for (auto it = overrides_.rbegin(); it != overrides_.rend(); ++it)
    if (is_prefix(it->path, path) || is_prefix(path, it->path)) return &*it;
  return nullptr;
}

std::string ReadContext::where(std::string_view key_path, const YAML::Mark& mark) const {
  if (const auto* o = override_for(key_path)) return fmt::format("override '{}'", o->text);
  if (has_position(mark)) return fmt::format("{}:{}:{}", deck_name_, mark.line + 1, mark.column + 1);
  return deck_name_;
}

void ReadContext::error(std::string_view key_path, const YAML::Mark& mark, const std::string& message) {
  const bool from_override = override_for(key_path) != nullptr;
  const bool positioned = !from_override && has_position(mark);
  problems_.push_back({from_override ? 0
                       : positioned  ? 1
                                     : 2,
                       positioned ? mark.line : 0, positioned ? mark.column : 0,
                       fmt::format("{}: error: {}", where(key_path, mark), message)});
}

void ReadContext::error_without_position(const std::string& message) {
  problems_.push_back({2, 0, 0, fmt::format("{}: error: {}", deck_name_, message)});
}

void ReadContext::note_unknown(std::string key_path, const YAML::Mark& mark) {
  unknown_.push_back({std::move(key_path), mark});
}

std::string ReadContext::suggestion_for(const std::string& path) const {
  const auto [parent, leaf] = split_last(path);
  std::vector<std::string> siblings;
  for (const auto& v : valid_) {
    const auto [p, l] = split_last(v);
    if (p == parent) siblings.push_back(l);
  }
  if (auto near = nearest(leaf, siblings))
    return fmt::format("; did you mean '{}'?", parent.empty() ? *near : parent + "." + *near);
  // A key written in the wrong section: the same word elsewhere ("training.lr" -> "optimizer.lr").
  for (const auto& v : valid_)
    if (edit_distance(split_last(v).second, leaf) == 0) return fmt::format("; did you mean '{}'?", v);
  if (siblings.empty()) return "";
  std::sort(siblings.begin(), siblings.end());
  siblings.erase(std::unique(siblings.begin(), siblings.end()), siblings.end());
  return fmt::format(" (valid keys {}: {})", parent.empty() ? "at the top level" : "in '" + parent + "'",
                     fmt::join(siblings, ", "));
}

void ReadContext::throw_if_errors() {
  for (const auto& u : unknown_)
    error(u.path, u.mark, fmt::format("unknown key '{}'{}", u.path, suggestion_for(u.path)));
  unknown_.clear();
  if (problems_.empty()) return;
  std::stable_sort(problems_.begin(), problems_.end(), [](const Problem& a, const Problem& b) {
    return std::tie(a.rank, a.line, a.column) < std::tie(b.rank, b.line, b.column);
  });
  constexpr size_t shown = 20;
  std::string message;
  for (size_t i = 0; i < std::min(problems_.size(), shown); ++i) {
    if (i) message += '\n';
    message += problems_[i].text;
  }
  if (problems_.size() > shown)
    message += fmt::format("\n{}: ({} more errors not shown)", deck_name_, problems_.size() - shown);
  throw UserError(message);
}

// ---- Range ---------------------------------------------------------------------------------

bool Range::contains(double v) const {
  const bool lo_ok = lo_open ? v > lo : v >= lo;
  const bool hi_ok = hi_open ? v < hi : v <= hi;
  return lo_ok && hi_ok;
}

std::string Range::describe() const {
  const bool has_lo = std::isfinite(lo), has_hi = std::isfinite(hi);
  if (has_lo && has_hi) return fmt::format("in {}{}, {}{}", lo_open ? '(' : '[', lo, hi, hi_open ? ')' : ']');
  if (has_lo) return fmt::format("{} {}", lo_open ? ">" : ">=", lo);
  if (has_hi) return fmt::format("{} {}", hi_open ? "<" : "<=", hi);
  return "a finite number";
}

std::string Range::document() const { return std::isfinite(lo) || std::isfinite(hi) ? describe() : "any"; }

// ---- Section -------------------------------------------------------------------------------

Section::Section(ReadContext& context, std::string path, const YAML::Node& node, const YAML::Mark& mark)
    : context_(&context), path_(std::move(path)), mark_(mark) {
  if (!node.IsDefined() || node.IsNull()) return;
  if (!node.IsMap()) {
    context_->error(
        path_, has_position(node.Mark()) ? node.Mark() : mark,
        fmt::format("'{}' is a section and expects a mapping of keys, got {}", path_, describe_value(node)));
    return;
  }
  for (auto it = node.begin(); it != node.end(); ++it) {
    if (!it->first.IsScalar()) {
      context_->error(path_, it->first.Mark(), "keys must be plain words");
      continue;
    }
    const std::string key = it->first.Scalar();
    if (const Entry* first = find(key)) {
      const YAML::Mark m = it->first.Mark();
      const YAML::Mark f = first->key_node.Mark();
      context_->error(key_path(key), m,
                      has_position(f) ? fmt::format("duplicate key '{}' (first set at line {})",
                                                    key_path(key), f.line + 1)
                                      : fmt::format("duplicate key '{}'", key_path(key)));
      continue;
    }
    entries_.push_back({key, it->first, it->second});
  }
}

std::string Section::key_path(std::string_view key) const {
  return path_.empty() ? std::string(key) : fmt::format("{}.{}", path_, key);
}

bool Section::has(std::string_view key) const { return present(key); }

const Section::Entry* Section::find(std::string_view key) const {
  for (const auto& e : entries_)
    if (e.key == key) return &e;
  return nullptr;
}

void Section::note_valid(std::string_view key) {
  if (gate_active_) context_->note_valid(key_path(key));
}

void Section::missing(std::string_view key, std::string_view hint) {
  note_valid(key);
  context_->error_without_position(fmt::format("missing required key '{}' ({})", key_path(key), hint));
}

YAML::Mark Section::value_mark(const Entry& e) const {
  // An empty value has no position of its own (yaml-cpp gives the next token's): use the key's.
  if (!e.value.IsDefined() || e.value.IsNull() || !has_position(e.value.Mark())) return e.key_node.Mark();
  return e.value.Mark();
}

bool Section::ok(std::string_view key) const {
  return std::find(failed_.begin(), failed_.end(), key) == failed_.end();
}

void Section::fail(std::string_view key, const std::string& message) {
  failed_.emplace_back(key);
  const Entry* e = find(key);
  context_->error(key_path(key), e ? value_mark(*e) : mark_, message);
}

const Section::Entry* Section::take(std::string_view key, std::string_view expects, bool& failed) {
  failed = false;
  note_valid(key);
  const Entry* e = find(key);
  if (!e) return nullptr;
  e->used = true;
  if (!gate_active_) {
    failed_.emplace_back(key);
    context_->error(
        key_path(key), e->key_node.Mark(),
        fmt::format("'{}' applies only to {} ({})", key_path(key), gate_applies_to_, gate_actual_));
    failed = true;
    return nullptr;
  }
  if (!e->value.IsDefined() || e->value.IsNull()) {
    fail(key, fmt::format("'{}' expects {}, got an empty value", key_path(key), expects));
    failed = true;
    return nullptr;
  }
  return e;
}

std::optional<std::string> Section::scalar_of(const Entry& e, std::string_view expects) {
  if (e.value.IsScalar()) return e.value.Scalar();
  fail(e.key, fmt::format("'{}' expects {}, got {}", key_path(e.key), expects, describe_value(e.value)));
  return std::nullopt;
}

void Section::record(std::string_view key, std::string type, std::string value, std::string fallback,
                     std::string allowed, const Doc& doc) {
  KeyRecord r;
  r.path = key_path(key);
  r.type = std::move(type);
  r.value = std::move(value);
  r.default_value = std::move(fallback);
  r.allowed = std::move(allowed);
  if (!doc.allowed_also.empty())
    r.allowed += fmt::format("{}{}", r.allowed.empty() ? "" : "; ", doc.allowed_also);
  r.meaning = doc.meaning;
  r.default_note = doc.default_text;
  r.only_for = only_for_;
  r.applies = gate_active_;
  context_->record(std::move(r));
}

void Section::mark_required(std::string_view key) {
  if (KeyRecord* r = context_->find_record(key_path(key))) r->required = true;
}

void Section::resolved(std::string_view key, int64_t value) {
  if (KeyRecord* r = context_->find_record(key_path(key))) r->value = fmt::format("{}", value);
}

int64_t Section::integer(std::string_view key, int64_t fallback, Range range, const Doc& doc,
                         int64_t largest) {
  const int64_t v = read_integer(key, fallback, range, largest);
  record(key, "int", fmt::format("{}", v), fmt::format("{}", fallback), range.document(), doc);
  return v;
}

double Section::number(std::string_view key, double fallback, Range range, const Doc& doc) {
  const double v = read_number(key, fallback, range);
  record(key, "float", yaml_number(v), yaml_number(fallback), range.document(), doc);
  return v;
}

namespace {
std::string integer_list_text(const std::vector<int>& v) {
  std::string s;
  for (int x : v) s += fmt::format("{}{}", s.empty() ? "" : ", ", x);
  return "[" + s + "]";
}
}  // namespace

std::vector<int> Section::integers(std::string_view key, const std::vector<int>& fallback, Range range,
                                   const Doc& doc) {
  std::vector<int> v = read_integers(key, fallback, range);
  record(key, "int list", integer_list_text(v), integer_list_text(fallback), "each " + range.document(), doc);
  return v;
}

std::vector<int> Section::read_integers(std::string_view key, const std::vector<int>& fallback, Range range) {
  const std::string expects = "a list of integers such as [4, 5, 7], each " + range.describe();
  bool failed = false;
  const Entry* e = take(key, expects, failed);
  if (!e) return fallback;
  std::vector<YAML::Node> items;
  if (e->value.IsScalar())
    items.push_back(e->value);
  else if (e->value.IsSequence())
    for (const YAML::Node& item : e->value) items.push_back(item);
  std::vector<int> out;
  for (const YAML::Node& item : items) {
    const auto v = item.IsScalar() && !quoted(item) ? parse_integer(item.Scalar()) : std::nullopt;
    if (!v || !range.contains(static_cast<double>(*v)) || *v > std::numeric_limits<int>::max()) {
      fail(key, fmt::format("'{}' expects {}, got {} in it", key_path(key), expects, describe_value(item)));
      return fallback;
    }
    out.push_back(static_cast<int>(*v));
  }
  if (out.empty()) {
    fail(key, fmt::format("'{}' expects {}, got {}", key_path(key), expects, describe_value(e->value)));
    return fallback;
  }
  return out;
}

bool Section::boolean(std::string_view key, bool fallback, const Doc& doc) {
  const bool v = read_boolean(key, fallback);
  record(key, "bool", v ? "true" : "false", fallback ? "true" : "false", "", doc);
  return v;
}

std::string Section::string(std::string_view key, const std::string& fallback, const Doc& doc) {
  std::string v = read_string(key, fallback);
  record(key, "string", yaml_string(v), yaml_string(fallback), "", doc);
  return v;
}

int64_t Section::read_integer(std::string_view key, int64_t fallback, Range range, int64_t largest) {
  const std::string expects = integer_expectation(range);
  bool failed = false;
  const Entry* e = take(key, expects, failed);
  if (!e) return fallback;
  auto text = scalar_of(*e, expects);
  if (!text) return fallback;
  const auto v = quoted(e->value) ? std::nullopt : parse_integer(*text);
  if (!v) {
    std::string hint;
    if (quoted(e->value) && parse_integer(*text))
      hint = " (write it without quotes)";
    else if (auto x = parse_number(*text);
             x && !quoted(e->value) && std::trunc(*x) == *x && std::abs(*x) < 9e15)
      hint = fmt::format(" (write it as {})", static_cast<int64_t>(*x));
    fail(key,
         fmt::format("'{}' expects {}, got {}{}", key_path(key), expects, describe_value(e->value), hint));
    return fallback;
  }
  if (!range.contains(static_cast<double>(*v))) {
    fail(key, fmt::format("'{}' must be {}, got {}", key_path(key), range.describe(), *text));
    return fallback;
  }
  if (*v > largest) {
    fail(key, fmt::format("'{}' is too large: at most {}, got {}", key_path(key), largest, *text));
    return fallback;
  }
  return *v;
}

std::optional<int64_t> Section::required_integer(std::string_view key, int64_t fallback,
                                                 std::string_view hint, Range range, const Doc& doc,
                                                 int64_t largest) {
  std::optional<int64_t> v;
  if (present(key) || describing()) {
    v = integer(key, fallback, range, doc, largest);
    if (!ok(key)) v.reset();
  } else {
    missing(key, hint);
    record(key, "int", fmt::format("{}", fallback), fmt::format("{}", fallback), range.document(), doc);
  }
  mark_required(key);
  return v;
}

double Section::read_number(std::string_view key, double fallback, Range range) {
  bool failed = false;
  const Entry* e = take(key, "a number", failed);
  if (!e) return fallback;
  auto text = scalar_of(*e, "a number");
  if (!text) return fallback;
  const auto v = quoted(e->value) ? std::nullopt : parse_number(*text);
  if (!v) {
    const char* hint = quoted(e->value) && parse_number(*text) ? " (write it without quotes)" : "";
    fail(key, fmt::format("'{}' expects a number, got {}{}", key_path(key), describe_value(e->value), hint));
    return fallback;
  }
  if (!range.contains(*v)) {
    fail(key, fmt::format("'{}' must be {}, got {}", key_path(key), range.describe(), *text));
    return fallback;
  }
  return *v;
}

bool Section::read_boolean(std::string_view key, bool fallback) {
  bool failed = false;
  const Entry* e = take(key, "true or false", failed);
  if (!e) return fallback;
  auto text = scalar_of(*e, "true or false");
  if (!text) return fallback;
  if (!quoted(e->value)) {
    if (*text == "true" || *text == "True" || *text == "TRUE") return true;
    if (*text == "false" || *text == "False" || *text == "FALSE") return false;
  }
  fail(key, fmt::format("'{}' expects true or false, got {}", key_path(key), describe_value(e->value)));
  return fallback;
}

std::string Section::read_string(std::string_view key, const std::string& fallback) {
  bool failed = false;
  const Entry* e = take(key, "a string", failed);
  if (!e) return fallback;
  auto text = scalar_of(*e, "a string");
  if (!text) return fallback;
  if (text->empty()) {
    fail(key, fmt::format("'{}' expects a non-empty string", key_path(key)));
    return fallback;
  }
  return *text;
}

std::optional<std::string> Section::choice_word(std::string_view key, const std::string& allowed,
                                                bool& failed) {
  const std::string expects = "one of: " + allowed;
  const Entry* e = take(key, expects, failed);
  if (!e) return std::nullopt;
  auto text = scalar_of(*e, expects);
  if (!text) failed = true;
  return text;
}

Section Section::section(std::string_view key, const Doc& doc, bool written) {
  note_valid(key);
  record(key, "section", "", "", "", doc);
  context_->find_record(key_path(key))->written = written;
  const Entry* e = find(key);
  if (!e) return Section(*context_, key_path(key), YAML::Node(), mark_);
  e->used = true;
  return Section(*context_, key_path(key), e->value, e->key_node.Mark());
}

Section::Gate::Gate(Section& section, bool active, std::string applies_to, std::string actual)
    : section_(section),
      previous_active_(section.gate_active_),
      previous_applies_to_(section.gate_applies_to_),
      previous_actual_(section.gate_actual_),
      previous_only_for_(section.only_for_) {
  section_.only_for_ = applies_to;
  // An inner gate inside an inactive one stays inactive with the outer reason.
  if (section_.gate_active_ && !active) {
    section_.gate_active_ = false;
    section_.gate_applies_to_ = std::move(applies_to);
    section_.gate_actual_ = std::move(actual);
  }
}

Section::Gate::~Gate() {
  section_.gate_active_ = previous_active_;
  section_.gate_applies_to_ = std::move(previous_applies_to_);
  section_.gate_actual_ = std::move(previous_actual_);
  section_.only_for_ = std::move(previous_only_for_);
}

void Section::finish() {
  for (const auto& e : entries_)
    if (!e.used) context_->note_unknown(key_path(e.key), e.key_node.Mark());
}

}  // namespace pdegen::config

// Parsing and applying `key.path=value` overrides (see overrides.hpp).
#include "config/overrides.hpp"

#include <fmt/format.h>

#include <cctype>

#include "core/error.hpp"

namespace pdegen::config {

namespace {

[[noreturn]] void override_error(const std::string& text, const std::string& message) {
  throw UserError(fmt::format("override '{}': error: {}", text, message));
}

bool is_key_word(const std::string& w) {
  if (w.empty()) return false;
  for (char c : w)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  return true;
}

}  // namespace

Override parse_override(const std::string& text) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos)
    override_error(text, "expected key.path=value (for example training.steps=500)");
  Override o;
  o.text = text;
  const std::string key = text.substr(0, eq);
  size_t start = 0;
  while (true) {
    const size_t dot = key.find('.', start);
    o.path.push_back(key.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (!is_key_word(o.path.back()))
      override_error(text, fmt::format("'{}' is not a key path (expected words joined by dots, like "
                                       "training.steps)",
                                       key));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  const std::string value = text.substr(eq + 1);
  try {
    o.value = YAML::Load(value);
  } catch (const YAML::Exception& e) {
    override_error(text, fmt::format("the value '{}' is not valid YAML: {}", value, e.msg));
  }
  if (!o.value.IsDefined() || o.value.IsNull())
    override_error(text, fmt::format("no value after '=' (write {}=VALUE)", key));
  return o;
}

void apply_override(YAML::Node& root, const Override& o) {
  YAML::Node current = root;
  std::string walked;
  for (size_t i = 0; i + 1 < o.path.size(); ++i) {
    walked += (i ? "." : "") + o.path[i];
    YAML::Node child = current[o.path[i]];
    if (!child.IsDefined() || child.IsNull()) {
      child = YAML::Node(YAML::NodeType::Map);
      child.reset(current[o.path[i]]);
    }
    if (!child.IsMap())
      override_error(o.text, fmt::format("'{}' holds a value, not a section, so it has no key '{}'", walked,
                                         o.path[i + 1]));
    current.reset(child);
  }
  current[o.path.back()] = o.value;
}

}  // namespace pdegen::config

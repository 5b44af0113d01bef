// Command-line overrides `key.path=value`: the value is parsed as YAML (so `optimizer.schedule={type:
// cosine}` sets a whole section) and written into the deck's tree before it is validated, so an
// override is checked exactly like the deck, and its errors name the override.
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

namespace pdegen::config {

struct Override {
  std::string text;               // as given, for messages
  std::vector<std::string> path;  // "training.steps" -> {"training", "steps"}
  YAML::Node value;
};

// Throws UserError "override 'TEXT': error: ..." for a missing '=', a malformed key path, an empty
// value or a value that is not valid YAML.
Override parse_override(const std::string& text);

// Sets root[path] = value, creating the sections on the way; a mapping value replaces the whole
// section there. Throws UserError when a key on the way holds a value instead of a section.
void apply_override(YAML::Node& root, const Override& o);

}  // namespace pdegen::config

// Key-by-key comparison of resolved decks (see deck_diff.hpp).
#include "config/deck_diff.hpp"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <map>
#include <utility>

#include "core/error.hpp"

namespace pdegen {

namespace {

using Flat = std::vector<std::pair<std::string, std::string>>;

// Every scalar under `node` as (dotted key, value); a sequence counts as one value.
void flatten(const YAML::Node& node, const std::string& prefix, Flat& out) {
  if (node.IsMap()) {
    for (const auto& entry : node)
      flatten(entry.second,
              prefix.empty() ? entry.first.as<std::string>() : prefix + "." + entry.first.as<std::string>(),
              out);
    return;
  }
  YAML::Emitter emitter;
  emitter << YAML::Flow << node;
  out.emplace_back(prefix, node.IsScalar() ? node.Scalar() : std::string(emitter.c_str()));
}

Flat flat_deck(const std::string& text) {
  Flat out;
  try {
    flatten(YAML::Load(text), "", out);
  } catch (const YAML::Exception& e) {
    throw UserError(fmt::format("a stored deck is not valid YAML: {}", e.what()));
  }
  return out;
}

}  // namespace

std::vector<DeckChange> deck_changes(const std::string& before, const std::string& after) {
  const Flat a = flat_deck(before), b = flat_deck(after);
  std::map<std::string, std::string> in_b(b.begin(), b.end()), in_a(a.begin(), a.end());
  std::vector<DeckChange> changes;
  for (const auto& [key, value] : a) {
    const auto it = in_b.find(key);
    if (it == in_b.end())
      changes.push_back({key, value, "(absent)"});
    else if (it->second != value)
      changes.push_back({key, value, it->second});
  }
  for (const auto& [key, value] : b)
    if (!in_a.count(key)) changes.push_back({key, "(absent)", value});
  return changes;
}

std::string describe(const DeckChange& change, const std::string& before_name,
                     const std::string& after_name) {
  return fmt::format("{} is {} in {}, {} in {}", change.key, change.before, before_name, change.after,
                     after_name);
}

}  // namespace pdegen

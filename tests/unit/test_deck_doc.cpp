// One description per deck key drives the reading, the resolved deck and docs/deck.md's key tables:
// the tables are the generated ones, every key read is in the resolved deck and in the tables, and a
// description given to a reader shows in its table. PDEGEN_UPDATE_DOCS=1 rewrites docs/deck.md.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "config/deck.hpp"
#include "config/deck_doc.hpp"
#include "core/error.hpp"

using namespace pdegen;
using namespace pdegen::config;

namespace {

std::filesystem::path deck_md() {
  return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path() / "docs" / "deck.md";
}

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

bool contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

// "optimizer.then.then.lr" -> "optimizer.lr": a phase's key is documented with the optimizer's.
std::string without_then(std::string path) {
  for (size_t at; (at = path.find(".then")) != std::string::npos;) path.erase(at, 5);
  return path;
}

// "optimizer.then.then.after_steps" -> "optimizer.then.after_steps": every phase has the same keys.
std::string one_then(std::string path) {
  for (size_t at; (at = path.find(".then.then")) != std::string::npos;) path.erase(at, 5);
  return path;
}

const std::vector<std::string> decks = {
    "problem: {pde: poisson2d, resolution: 64}\n",
    "problem: {pde: poisson3d, resolution: 32, loss: residual}\nnetwork: {norm: batch}\n",
    "problem: {pde: burgers1d, resolution: 64}\n"
    "optimizer: {type: lbfgs, lr: 1, schedule: {type: step}}\n",
    "problem: {pde: poisson2d, resolution: 64}\n"
    "optimizer: {type: lars, schedule: {type: cosine},\n"
    "            then: {after_steps: 10, type: sgd, then: {after_steps: 20, type: lamb}}}\n"
    "training: {restart: 'runs/a b'}\n",
};

}  // namespace

TEST_CASE("docs/deck.md's key tables are the ones the readers describe") {
  const std::string md = read_text(deck_md());
  REQUIRE(!md.empty());
  const std::string generated = with_key_tables(md, deck_records(reference_deck, "reference"));
  if (const char* update = std::getenv("PDEGEN_UPDATE_DOCS"); update && std::string(update) == "1") {
    std::ofstream(deck_md()) << generated;
    MESSAGE("rewrote " << deck_md().string());
  }
  CHECK_MESSAGE(md == generated,
                "docs/deck.md's key tables are out of date: run PDEGEN_UPDATE_DOCS=1 test_deck_doc");
  // Every section with keys has its table.
  for (const std::string& section : documented_sections(deck_records(reference_deck, "reference"))) {
    CAPTURE(section);
    CHECK(contains(md, fmt::format("<!-- deck-keys: {} -->", section.empty() ? "top-level" : section)));
  }
}

TEST_CASE("every key a deck reads is in its resolved deck and in docs/deck.md's tables") {
  const std::vector<KeyRecord> documented = documented_records(deck_records(reference_deck, "reference"));
  auto is_documented = [&](const std::string& path) {
    return std::any_of(documented.begin(), documented.end(), [&](const KeyRecord& r) {
      return r.path == path || r.path == without_then(path) || r.path == one_then(path);
    });
  };
  const std::string md = read_text(deck_md());
  for (const KeyRecord& r : documented) {
    CAPTURE(r.path);
    CHECK(!r.meaning.empty());
    const size_t dot = r.path.rfind('.');
    if (r.type != "section" || dot != std::string::npos)
      CHECK(contains(
          md, fmt::format("| `{}` | {} |", r.path.substr(dot == std::string::npos ? 0 : dot + 1), r.type)));
  }
  for (const std::string& text : decks) {
    CAPTURE(text);
    const std::vector<KeyRecord> records = deck_records(text, "deck.yaml");
    // The resolved deck is the records that apply, and reading a Deck back records the same.
    CHECK(resolved_yaml(records) == to_yaml(parse_deck(text, "deck.yaml")));
    for (const KeyRecord& r : records) {
      CAPTURE(r.path);
      CHECK(is_documented(r.path));
    }
  }
}

TEST_CASE("a key's description drives its reading, the resolved deck and its table") {
  ReadContext context("demo.yaml");
  const YAML::Node root = YAML::Load("demo: {size: 2.5, kind: step}\n");
  Section top(context, "", root, YAML::Mark::null_mark());
  Section s = top.section("demo", "a demo section");
  CHECK(s.number("size", 1.0, above(0), Doc("the size of the demo").allowed("<= `limit`")) == 2.5);
  const auto kind = s.choice<ScheduleKind>("kind", ScheduleKind::constant, "the kind of demo");
  CHECK(kind == ScheduleKind::step);
  {
    Section::Gate gate(s, false, "demo kind other", "demo.kind is 'step'");
    CHECK(s.integer("other", 7, at_least(1), Doc("a key of another kind").default_is("7 or 8")) == 7);
  }
  s.finish();
  top.finish();
  CHECK_NOTHROW(context.throw_if_errors());

  const std::string table = key_table(context.records(), "demo");
  CHECK(contains(table, "| key | type | default | allowed | only for | meaning |\n"));
  CHECK(contains(table, "| `size` | float | `1.0` | > 0; <= `limit` |  | the size of the demo |\n"));
  CHECK(contains(table,
                 "| `kind` | choice | `constant` | `constant`, `step`, `cosine` |  | the kind of demo |\n"));
  CHECK(contains(table, "| `other` | int | 7 or 8 | >= 1 | demo kind other | a key of another kind |\n"));
  // The key of the other kind is documented but not resolved.
  CHECK(resolved_yaml(context.records()) == "demo:\n  size: 2.5\n  kind: step\n");

  ReadContext bad("demo.yaml");
  Section top2(bad, "", YAML::Load("size: -1\n"), YAML::Mark::null_mark());
  top2.number("size", 1.0, above(0), "the size");
  top2.finish();
  CHECK_THROWS_WITH_AS(bad.throw_if_errors(), "demo.yaml:1:7: error: 'size' must be > 0, got -1", UserError);
}

TEST_CASE("with_key_tables refuses a marker of a section without keys") {
  const auto records = deck_records(reference_deck, "reference");
  CHECK_THROWS_AS(with_key_tables("<!-- deck-keys: nothing -->\n<!-- end deck-keys -->\n", records),
                  UserError);
  CHECK_THROWS_AS(with_key_tables("<!-- deck-keys: problem -->\n", records), UserError);
  CHECK(with_key_tables("a\n<!-- deck-keys: cuda -->\nold\n<!-- end deck-keys -->\nb\n", records) ==
        "a\n<!-- deck-keys: cuda -->\n" + key_table(records, "cuda") + "<!-- end deck-keys -->\nb\n");
}

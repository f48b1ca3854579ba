#include "ft/io/options_file.h"

#include <fstream>
#include <sstream>
#include <system_error>
#include <unordered_map>
#include <utility>

#include <yaml-cpp/depthguard.h>    // defines: YAML::DeepRecursion
#include <yaml-cpp/eventhandler.h>  // defines: YAML::EventHandler
#include <yaml-cpp/exceptions.h>    // defines: YAML::Exception
#include <yaml-cpp/mark.h>          // defines: YAML::Mark
#include <yaml-cpp/parser.h>        // defines: YAML::Parser

#include "ft/core/error.h"

namespace ft::io {
namespace {

namespace fs = std::filesystem;

constexpr const char* kPlace = "config";

std::string shortened(const std::string& text) {
  return text.size() > 60 ? text.substr(0, 57) + "..." : text;
}

// Note [Options files are read as events]
// yaml-cpp's YAML::Load builds a node for everything in the file, however deep (its parser
// recurses once per level, up to its own guard of 2,000 calls, a few hundred levels, refused
// as "bad file"), and an alias shares its anchor's node, so copying the values out expands
// each alias: a list of aliases of a long scalar, or of a list of many empty strings, is a
// "billion laughs" that a small file turns into gigabytes. Reading yaml-cpp's events instead,
// the reader refuses what an options file cannot hold (a key that is not a scalar, a value
// that is neither a scalar nor a list of scalars) where it opens, so the parser goes at most
// three levels down; and each key and value added, aliases included, is counted against
// kMaxOptionsFileBytes (its bytes plus one, so that empty strings count too). yaml-cpp's
// guard alone holds when a document is parsed again for its syntax errors: 100,000 levels of
// "[" or "{a: " end in its DeepRecursion, not in a stack overflow (options_file_test.cpp).
class OptionsReader final : public YAML::EventHandler {
 public:
  explicit OptionsReader(const std::string& name) : name_(name) {}

  std::vector<OptionEntry> entries() {
    if (state_ != State::kDone) fail_root();  // an empty file
    return std::move(entries_);
  }

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}

  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    if (state_ == State::kItem) return add_item("null", anchor, mark);
    fail_here(mark);
  }

  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                const std::string& value) override {
    if (state_ == State::kKey) {
      if (anchor != YAML::NullAnchor) anchors_[anchor] = {{value}, false};
      return add_key(value, mark);
    }
    if (state_ == State::kValue) {
      if (anchor != YAML::NullAnchor) anchors_[anchor] = {{value}, false};
      return add_value({value}, mark);
    }
    if (state_ == State::kItem) return add_item(value, anchor, mark);
    fail_here(mark);
  }

  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    auto it = anchors_.find(anchor);
    const bool scalar = it != anchors_.end() && !it->second.list;
    if (state_ == State::kKey && scalar) return add_key(it->second.values[0], mark);
    if (state_ == State::kValue && it != anchors_.end()) return add_value(it->second.values, mark);
    if (state_ == State::kItem && scalar) return add_item(it->second.values[0], 0, mark);
    fail_here(mark);
  }

  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    if (state_ != State::kValue) fail_here(mark);
    entries_.push_back({std::move(key_), {}});
    list_anchor_ = anchor;
    state_ = State::kItem;
  }

  void OnSequenceEnd() override {
    FT_ASSERT(state_ == State::kItem);
    if (list_anchor_ != YAML::NullAnchor) anchors_[list_anchor_] = {entries_.back().values, true};
    state_ = State::kKey;
  }

  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    if (state_ != State::kRoot) fail_here(mark);
    state_ = State::kKey;
  }

  void OnMapEnd() override {
    FT_ASSERT(state_ == State::kKey);
    state_ = State::kDone;
  }

 private:
  // kRoot: before the document's node; kKey, kValue: in the root mapping; kItem: in a
  // value's list; kDone: after the mapping.
  enum class State { kRoot, kKey, kValue, kItem, kDone };

  // What an anchor names, as the reader took it: a scalar, or a list of scalars. Anchors of
  // anything else are not kept, and aliases of them are refused where they stand.
  struct Anchored {
    std::vector<std::string> values;
    bool list = false;
  };

  void count(const std::string& text, const YAML::Mark& mark) {
    bytes_ += text.size() + 1;
    FT_CHECK(bytes_ <= kMaxOptionsFileBytes, kPlace, name_, ": line ", mark.line + 1,
             ": the keys and values, aliases expanded, pass the limit of ", kMaxOptionsFileBytes,
             " bytes");
  }

  void add_key(const std::string& key, const YAML::Mark& mark) {
    count(key, mark);
    key_ = key;
    state_ = State::kValue;
  }

  void add_value(const std::vector<std::string>& values, const YAML::Mark& mark) {
    for (const auto& v : values) count(v, mark);
    entries_.push_back({std::move(key_), values});
    state_ = State::kKey;
  }

  void add_item(const std::string& item, YAML::anchor_t anchor, const YAML::Mark& mark) {
    count(item, mark);
    entries_.back().values.push_back(item);
    if (anchor != YAML::NullAnchor) anchors_[anchor] = {{item}, false};
  }

  [[noreturn]] void fail_root() {
    throw Error(kPlace, name_ + ": expected a mapping of option names to values");
  }

  // The node at mark has no place in an options file.
  [[noreturn]] void fail_here(const YAML::Mark& mark) {
    if (state_ == State::kRoot) fail_root();
    if (state_ == State::kKey) {
      throw Error(kPlace, name_ + ": line " + std::to_string(mark.line + 1) +
                              ": keys must be option names, not lists, mappings or null");
    }
    const std::string& key = state_ == State::kValue ? key_ : entries_.back().key;
    throw Error(kPlace, name_ + ": key '" + shortened(key) + "' needs a value or a list");
  }

  const std::string& name_;
  State state_ = State::kRoot;
  std::vector<OptionEntry> entries_;
  std::string key_;  // the key whose value comes next
  YAML::anchor_t list_anchor_ = YAML::NullAnchor;
  std::unordered_map<YAML::anchor_t, Anchored> anchors_;
  size_t bytes_ = 0;
};

// Takes yaml-cpp's events and keeps nothing: parsing the document through it finds the
// syntax errors alone.
class Discard final : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

void parse_first_document(const std::string& text, YAML::EventHandler& handler) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  parser.HandleNextDocument(handler);  // the first document only, as YAML::Load reads
}

}  // namespace

std::vector<OptionEntry> parse_options_yaml(std::string_view text,
                                            const std::string& name_for_errors) {
  FT_CHECK(text.size() <= kMaxOptionsFileBytes, kPlace, name_for_errors, ": larger than ",
           kMaxOptionsFileBytes, " bytes, the limit for an options file");
  const std::string copy(text);
  OptionsReader reader(name_for_errors);
  try {
    parse_first_document(copy, reader);
  } catch (const YAML::Exception& e) {
    throw Error(kPlace, name_for_errors + ": " + e.what());
  } catch (const Error&) {
    // The reader stopped at something an options file cannot hold. A syntax error further on
    // is the better message ("model: [unclosed" reads as a mapping in a list until its end):
    // the document is parsed again, keeping nothing, to look for one. yaml-cpp's own limit on
    // nesting is no syntax error: the reader's message stands.
    try {
      Discard discard;
      parse_first_document(copy, discard);
    } catch (const YAML::DeepRecursion&) {
    } catch (const YAML::Exception& e) {
      throw Error(kPlace, name_for_errors + ": " + e.what());
    }
    throw;
  }
  return reader.entries();
}

std::vector<OptionEntry> read_options_yaml(const fs::path& file) {
  const std::string name = file.string();
  std::error_code ec;
  FT_CHECK(fs::exists(file, ec), kPlace, name, ": no such file");
  FT_CHECK(!fs::is_directory(file, ec), kPlace, name, ": is a folder, not a file");
  std::ifstream in(file, std::ios::binary);
  FT_CHECK(in.is_open(), kPlace, name, ": cannot be opened");
  // One byte past the limit is enough to refuse: a device or a pipe is never read to its end.
  std::string text(kMaxOptionsFileBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  FT_CHECK(!in.bad(), kPlace, name, ": cannot be read");
  text.resize(static_cast<size_t>(in.gcount()));
  return parse_options_yaml(text, name);
}

}  // namespace ft::io

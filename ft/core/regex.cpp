#define PCRE2_CODE_UNIT_WIDTH 8
#include "ft/core/regex.h"

#include <pcre2.h>

#include "ft/core/error.h"

// Note [Regex limits]
// ~~~~~~~~~~~~~~~~~~~
// Patterns come from users (a LoRA target, a recipe rule, a tokenizer.json), so the engine
// must survive any of them. libstdc++'s std::regex does not: it matches by recursion (a long
// path overflows the stack), backtracks without bound, and its compiler overflows a signed
// integer on a long back-reference number. PCRE2, which ft links for the tokenizers anyway,
// compiles to a bytecode (and JIT code where it can), keeps its backtracking state on the
// heap, and stops a match after its match, depth and heap limits (10 million steps, 20 MB
// by default); ft turns such a stop into an ft::Error naming the pattern. The syntax is
// Perl's, which is also what Python's `re` (PEFT's target_modules) speaks.

namespace ft {

namespace {

// A compiled pattern and whether the JIT took it.
struct Code {
  pcre2_code* code = nullptr;
  bool jit = false;

  Code(const std::string& pattern, uint32_t options, const std::string& place) {
    int error = 0;
    PCRE2_SIZE offset = 0;
    code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options,
                         &error, &offset, nullptr);
    if (!code) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error, message, sizeof(message));
      throw Error(place, "regex '" + pattern + "' does not compile at offset " +
                             std::to_string(offset) + ": " +
                             reinterpret_cast<const char*>(message));
    }
    jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  }
  ~Code() { pcre2_code_free(code); }
  Code(const Code&) = delete;
  Code& operator=(const Code&) = delete;
};

}  // namespace

// Two compilations: one that searches, and one anchored at both ends for full_match (the
// JIT takes anchoring only when the pattern is compiled, not when it runs).
struct Regex::Impl {
  Code search;
  Code whole;
  Impl(const std::string& pattern, uint32_t options, const std::string& place)
      : search(pattern, options, place),
        whole(pattern, options | PCRE2_ANCHORED | PCRE2_ENDANCHORED, place) {}
};

Regex::Regex(std::string_view pattern, std::string place, Text text)
    : pattern_(pattern),
      place_(std::move(place)),
      impl_(std::make_unique<Impl>(pattern_, text == Text::kUnicode ? PCRE2_UTF | PCRE2_UCP : 0,
                                   place_)) {}

Regex::~Regex() = default;
Regex::Regex(Regex&&) noexcept = default;
Regex& Regex::operator=(Regex&&) noexcept = default;

bool Regex::match_at(std::string_view text, size_t start, bool whole, bool checked_utf8,
                     std::vector<std::pair<size_t, size_t>>& ranges) const {
  const Code& code = whole ? impl_->whole : impl_->search;
  // A match block per thread for the whole match alone (the tokenizers encode on several
  // threads); one sized by the pattern when the groups are wanted.
  struct MatchData {
    pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
    ~MatchData() { pcre2_match_data_free(data); }
  };
  thread_local MatchData shared;
  std::unique_ptr<pcre2_match_data, void (*)(pcre2_match_data*)> own(nullptr,
                                                                     pcre2_match_data_free);
  if (!ranges.empty()) own.reset(pcre2_match_data_create_from_pattern(code.code, nullptr));
  pcre2_match_data* data = own ? own.get() : shared.data;
  FT_ASSERT(data != nullptr);

  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  const uint32_t options = checked_utf8 ? PCRE2_NO_UTF_CHECK : 0;
  int rc = PCRE2_ERROR_JIT_STACKLIMIT;
  if (code.jit)
    rc = pcre2_jit_match(code.code, subject, text.size(), start, options, data, nullptr);
  // The JIT's machine stack is small; the interpreter keeps its state on the heap.
  if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
    rc = pcre2_match(code.code, subject, text.size(), start, options | PCRE2_NO_JIT, data,
                     nullptr);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT || rc == PCRE2_ERROR_HEAPLIMIT) {
    std::string shown(text.substr(0, 80));
    if (text.size() > 80) shown += "...";
    throw Error(place_, "regex '" + pattern_ + "' needs more than PCRE2's limit of steps on '" +
                            shown + "': simplify its nested repeats");
  }
  FT_CHECK(rc >= 0, place_, "regex '", pattern_, "' failed with PCRE2 error ", rc);
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data);
  const size_t pairs = own ? pcre2_get_ovector_count(data) : 1;
  ranges.assign(pairs, {0, 0});
  for (size_t i = 0; i < pairs; ++i)
    if (ov[2 * i] != PCRE2_UNSET) ranges[i] = {ov[2 * i], ov[2 * i + 1]};
  return true;
}

bool Regex::search(std::string_view text) const {
  std::vector<std::pair<size_t, size_t>> ranges;
  return match_at(text, 0, false, false, ranges);
}

bool Regex::full_match(std::string_view text, std::vector<std::string_view>* groups) const {
  // A non-empty ranges asks match_at for every group.
  std::vector<std::pair<size_t, size_t>> ranges(groups ? 1 : 0);
  if (!match_at(text, 0, true, false, ranges)) return false;
  if (groups) {
    groups->clear();
    for (const auto& [b, e] : ranges) groups->push_back(text.substr(b, e - b));
  }
  return true;
}

void Regex::find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const {
  std::vector<std::pair<size_t, size_t>> ranges;
  size_t start = 0;
  while (start <= text.size()) {
    ranges.clear();
    if (!match_at(text, start, false, true, ranges)) break;
    const auto [b, e] = ranges[0];
    if (e > b) {
      out.emplace_back(b, e);
      start = e;
    } else {
      // Step over one whole code point after an empty match.
      start = e + 1;
      while (start < text.size() && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80)
        ++start;
    }
  }
}

std::string regex_escape(std::string_view s) {
  static constexpr std::string_view kSpecial = R"(\^$.|?*+()[]{})";
  std::string out;
  for (char c : s) {
    if (kSpecial.find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

}  // namespace ft

#include "ft/data/tokenize_sample.h"

#include <algorithm>

#include "ft/core/error.h"

namespace ft::data {
namespace {

using Json = nlohmann::ordered_json;

Json slice(const Json& messages, size_t n) {
  Json out = Json::array();
  for (size_t i = 0; i < n; ++i) out.push_back(messages[i]);
  return out;
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

std::vector<int32_t> to_i32(const std::vector<int>& v) {
  return {v.begin(), v.end()};
}

std::string content_text(const Json& m) {
  if (!m.contains("content") || !m["content"].is_string()) return "";
  return m["content"].get<std::string>();
}

// Compares as std::string: json == "literal" trips a false -Warray-bounds in GCC 12.
bool is_assistant(const Json& m) {
  return m.contains("role") && m["role"].is_string() &&
         m["role"].get_ref<const std::string&>() == "assistant";
}

}  // namespace

int64_t trained_tokens(const Sample& s) {
  int64_t n = 0;
  for (size_t i = 1; i < s.mask.size(); ++i) n += s.mask[i];
  return n;
}

SampleTokenizer::SampleTokenizer(const tokenizer::Tokenizer& tok, const chat::ChatTemplate* chat,
                                 SampleOptions options)
    : tok_(tok), chat_(options.use_template ? chat : nullptr), options_(options) {
  for (int id : tok_.special_token_ids()) {
    if (auto text = tok_.id_to_token(id)) special_texts_.push_back(*text);
  }
  FT_CHECK(options_.max_seq_length >= 0, "data", "max_seq_length must be >= 0, got ",
           options_.max_seq_length);
}

std::string SampleTokenizer::render(const Record& record) const {
  if (record.is_text || !chat_) {
    if (record.is_text) return record.text;
    std::string out;
    for (const auto& m : record.messages) out += content_text(m);
    return out;
  }
  chat::RenderOptions ro;
  ro.tools = record.tools;
  return chat_->render(record.messages, ro);
}

Sample SampleTokenizer::tokenize(const Record& record, const std::string& where) const {
  Sample s;
  try {
    if (record.is_text) {
      s = tokenize_text(record.text);
    } else if (chat_) {
      s = tokenize_chat(record, where);
    } else {
      s = tokenize_plain(record);
    }
  } catch (const Error& e) {
    if (e.place() == "data") throw;
    throw Error("data", where + ": " + e.what());
  }
  FT_ASSERT(s.ids.size() == s.mask.size());
  if (options_.max_seq_length > 0 && s.ids.size() > size_t(options_.max_seq_length)) {
    s.ids.resize(options_.max_seq_length);
    s.mask.resize(options_.max_seq_length);
    s.truncated = true;
  }
  if (trained_tokens(s) == 0) {
    throw Error("data", where + ": no trainable token left" +
                            (s.truncated ? " after truncation to " +
                                               std::to_string(options_.max_seq_length) + " tokens"
                                         : std::string()));
  }
  return s;
}

Sample SampleTokenizer::tokenize_text(const std::string& text) const {
  Sample s;
  s.ids = to_i32(tok_.encode(text, true));
  if (tok_.eos_token() && (s.ids.empty() || s.ids.back() != tok_.eos_token()->id)) {
    s.ids.push_back(tok_.eos_token()->id);
  }
  s.mask.assign(s.ids.size(), 1);
  return s;
}

// Without a template: BOS (by the post-processor), each message's content in turn, EOS.
// With mask_prompt only the assistant contents and the EOS are trained.
Sample SampleTokenizer::tokenize_plain(const Record& record) const {
  Sample s;
  bool first = true;
  for (const auto& m : record.messages) {
    std::vector<int> piece = tok_.encode(content_text(m), first);
    first = false;
    bool trained = !options_.mask_prompt || is_assistant(m);
    s.ids.insert(s.ids.end(), piece.begin(), piece.end());
    s.mask.insert(s.mask.end(), piece.size(), trained ? 1 : 0);
  }
  if (tok_.eos_token()) {
    s.ids.push_back(tok_.eos_token()->id);
    s.mask.push_back(1);
  }
  return s;
}

// Note [Assistant spans]: a trained span starts where render(messages[:i],
// add_generation_prompt) ends, which must be a prefix of the whole rendering. It ends
// after the turn's content and the end-of-turn text: what follows the content in
// render(messages[:i+1]) and also in the whole, up to and including its first special
// token (<|im_end|>, <|eot_id|>, <end_of_turn>). Stopping there matters: templates such
// as Llama 3's always append the next header, and Qwen3 renders a last turn with an
// empty <think> block, so render(messages[:i+1]) is not always a prefix of the whole.
// A turn without string content (tool calls only) ends where render(messages[:i+1])
// does, when that is a prefix.
// Character spans become token spans by encoding each boundary's prefix, which must
// tokenize as a prefix of the whole; when one does not, the pieces between boundaries
// are encoded separately and concatenated.
size_t SampleTokenizer::turn_end(const std::string& full, const std::string& upto,
                                 const std::string& content, size_t begin, size_t turn,
                                 const std::string& where) const {
  size_t at = content.empty() ? std::string::npos : full.find(content, begin);
  size_t in_upto = content.empty() ? std::string::npos : upto.rfind(content);
  if (at != std::string::npos && in_upto != std::string::npos) {
    size_t end = at + content.size();
    size_t tail_at = in_upto + content.size();
    size_t common = 0;
    while (tail_at + common < upto.size() && end + common < full.size() &&
           upto[tail_at + common] == full[end + common])
      ++common;
    std::string_view ext = std::string_view(full).substr(end, common);
    size_t cut = std::string::npos;
    for (const std::string& special : special_texts_) {
      size_t pos = ext.find(special);
      if (pos != std::string::npos) cut = std::min(cut, pos + special.size());
    }
    if (cut != std::string::npos) return end + cut;
    if (starts_with(full, upto) && upto.size() > end) return upto.size();
    return end + common;
  }
  FT_CHECK(starts_with(full, upto), "data", where, ": cannot find the end of assistant message ",
           turn, " in the rendered chat template");
  return upto.size();
}

Sample SampleTokenizer::tokenize_chat(const Record& record, const std::string& where) const {
  chat::RenderOptions ro;
  ro.tools = record.tools;
  const Json& msgs = record.messages;
  std::string full = chat_->render(msgs, ro);
  Sample s;
  if (!options_.mask_prompt) {
    s.ids = to_i32(tok_.encode(full, false));
    s.mask.assign(s.ids.size(), 1);
    return s;
  }
  std::vector<std::pair<size_t, size_t>> spans;  // trained character ranges of full
  for (size_t i = 0; i < msgs.size(); ++i) {
    if (!is_assistant(msgs[i])) continue;
    chat::RenderOptions gen = ro;
    gen.add_generation_prompt = true;
    std::string before = chat_->render(slice(msgs, i), gen);
    std::string upto = chat_->render(slice(msgs, i + 1), ro);
    FT_CHECK(starts_with(full, before), "data", where, ": the chat template renders message ", i,
             " differently in context; cannot find the assistant turn");
    size_t begin = before.size();
    size_t end = turn_end(full, upto, content_text(msgs[i]), begin, i, where);
    if (end > begin) spans.emplace_back(begin, end);
  }
  std::vector<size_t> cuts{0};
  for (auto [b, e] : spans) {
    cuts.push_back(b);
    cuts.push_back(e);
  }
  cuts.push_back(full.size());
  std::vector<int> whole = tok_.encode(full, false);
  std::vector<size_t> tok_cuts;
  bool aligned = true;
  for (size_t c : cuts) {
    if (c == 0) {
      tok_cuts.push_back(0);
      continue;
    }
    if (c == full.size()) {
      tok_cuts.push_back(whole.size());
      continue;
    }
    std::vector<int> prefix = tok_.encode(std::string_view(full).substr(0, c), false);
    if (prefix.size() > whole.size() || !std::equal(prefix.begin(), prefix.end(), whole.begin())) {
      aligned = false;
      break;
    }
    tok_cuts.push_back(prefix.size());
  }
  if (aligned) {
    s.ids = to_i32(whole);
    s.mask.assign(s.ids.size(), 0);
    // cuts alternate: [0, b0), [b0, e0) trained, [e0, b1), ...
    for (size_t k = 1; k + 1 < tok_cuts.size(); k += 2) {
      std::fill(s.mask.begin() + tok_cuts[k], s.mask.begin() + tok_cuts[k + 1], 1);
    }
    return s;
  }
  for (size_t k = 0; k + 1 < cuts.size(); ++k) {
    std::vector<int> piece =
        tok_.encode(std::string_view(full).substr(cuts[k], cuts[k + 1] - cuts[k]), false);
    s.ids.insert(s.ids.end(), piece.begin(), piece.end());
    s.mask.insert(s.mask.end(), piece.size(), k % 2 == 1 ? 1 : 0);
  }
  return s;
}

}  // namespace ft::data

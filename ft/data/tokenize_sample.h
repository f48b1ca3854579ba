// One record to token ids with a loss mask: the chat template renders conversations
// (or, without a template, the pieces are concatenated between BOS and EOS), and with
// mask_prompt only the assistant turns are trained.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ft/data/records.h"
#include "ft/template/chat_template.h"
#include "ft/tokenizer/tokenizer.h"

namespace ft::data {

struct Sample {
  std::vector<int32_t> ids;   // (n,)
  std::vector<uint8_t> mask;  // (n,) 1 where token i is a trained target (predicted from i-1)
  bool truncated = false;
};

struct SampleOptions {
  bool mask_prompt = false;  // train on completions / assistant turns only
  bool use_template = true;  // render conversations with the chat template when there is one
  int max_seq_length = 0;    // keep at most this many tokens; 0: no limit
};

class SampleTokenizer {
 public:
  // chat may be null: conversations are then concatenated (BOS, turns, EOS).
  SampleTokenizer(const tokenizer::Tokenizer& tok, const chat::ChatTemplate* chat,
                  SampleOptions options);

  // Throws ft::Error naming `where` (file:line) for a template error and for a sample
  // left with no trained token.
  Sample tokenize(const Record& record, const std::string& where) const;

  // The rendered text of a conversation (what tokenize encodes with the template).
  std::string render(const Record& record) const;
  const SampleOptions& options() const { return options_; }

 private:
  Sample tokenize_text(const std::string& text) const;
  Sample tokenize_chat(const Record& record, const std::string& where) const;
  Sample tokenize_plain(const Record& record) const;
  size_t turn_end(const std::string& full, const std::string& upto, const std::string& content,
                  size_t begin, size_t turn, const std::string& where) const;

  const tokenizer::Tokenizer& tok_;
  const chat::ChatTemplate* chat_;
  SampleOptions options_;
  std::vector<std::string> special_texts_;  // text of every special added token
};

// Number of trained targets of a sample (mask[i] for i >= 1: token 0 has no predecessor).
int64_t trained_tokens(const Sample& s);

}  // namespace ft::data

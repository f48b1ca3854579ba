// Datasets on disk to tokenized splits: a file of records (JSONL or a JSON array, plain,
// gzip or zstd), a folder with train/valid/test files of those, one file split by a ratio, or a
// folder of Markdown/plain text read as a raw corpus. Tokenized splits are cached on disk and
// memory-mapped, keyed by a hash of the data, the tokenizer files and the options.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "ft/data/records.h"
#include "ft/data/tokenize_sample.h"
#include "ft/data/tokenized.h"
#include "ft/io/gguf_tokenizer.h"  // defines: io::TokenizerFiles
#include "ft/template/chat_template.h"
#include "ft/tokenizer/tokenizer.h"

namespace ft::data {

struct DataOptions {
  Format format = Format::kAuto;
  SampleOptions sample;
  bool skip_bad_records = false;    // count and report bad records instead of stopping
  std::filesystem::path cache_dir;  // empty: no cache
  double valid_fraction = 0.0;      // one JSONL file: this share becomes "valid"
  uint64_t seed = 0;                // picks the valid records of a split file
  // A named chat template (chatml, llama3, ...) or a .jinja file in place of the
  // tokenizer's own (ChatTemplate::from_spec); empty: the tokenizer's, if any.
  std::string chat_template;
};

// Where commands cache tokenized data: $FT_CACHE_DIR, else $XDG_CACHE_HOME/ft/data,
// else ~/.cache/ft/data (a folder under the system's temp folder without a home).
std::filesystem::path default_cache_dir();

struct DataStats {
  Format format = Format::kAuto;  // detected or given
  int64_t records = 0;            // samples kept
  int64_t tokens = 0;
  int64_t trained_tokens = 0;
  int64_t truncated = 0;
  int64_t skipped = 0;
  std::vector<std::string> skip_reasons;  // the first few, each naming file:line
  bool from_cache = false;
};

struct Split {
  std::string name;  // "train", "valid", "test"
  std::filesystem::path source;
  TokenizedData data;
  DataStats stats;
};

// One `--data` argument: PATH, or PATH:WEIGHT for a share of a mixture (Note [Mixtures]
// in dataset.cpp).
struct DataSource {
  std::filesystem::path path;
  double weight = 0;  // > 0: its share of the training records, with the others'; 0: none
};
// "PATH[:WEIGHT]"; a path that exists as written keeps its colons. Throws ft::Error for a
// weight that is not a positive number.
DataSource parse_data_source(const std::string& text);

class DataLoader {
 public:
  // Loads the tokenizer and, when the folder has one, its chat template; tokenizer_dir
  // may also be a GGUF file, whose metadata holds both (Note [GGUF tokenizers]).
  DataLoader(const std::filesystem::path& tokenizer_dir, DataOptions options);
  // Fixed in place: the sample tokenizer refers to the tokenizer and template it holds.
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // One JSONL file, read line by line. Throws ft::Error naming file:line for a bad
  // record unless skip_bad_records, and for an empty file.
  Split load_file(const std::filesystem::path& file, const std::string& name = "train") const;
  // A file (split by valid_fraction when positive), a folder with train/valid/test files, a
  // folder of other record files (joined, then split like a file) or a folder of .md/.txt
  // files (a raw corpus). Splits come out train, valid, test.
  std::vector<Split> load(const std::filesystem::path& path) const;
  // Several sources, each as load() reads it: the training records mixed by weight, or
  // joined when no source has one; valid and test splits joined. One source is load().
  std::vector<Split> load_all(const std::vector<DataSource>& sources) const;
  // Every .md/.txt file under dir, sorted, each a document cut into chunks of
  // max_seq_length tokens (the whole document when 0); every token is trained.
  Split load_corpus(const std::filesystem::path& dir) const;

  const tokenizer::Tokenizer& tokenizer() const { return tok_; }
  const chat::ChatTemplate* chat_template() const { return chat_ ? &*chat_ : nullptr; }
  const SampleTokenizer& sample_tokenizer() const { return samples_; }
  // The cache file a JSONL file (or a corpus folder) maps to under these options.
  std::filesystem::path cache_file(const std::filesystem::path& file) const;

 private:
  using Sink = std::function<void(const Sample&, int64_t line)>;
  // Reads the file line by line, handing each sample to `sink`.
  DataStats tokenize_file(const std::filesystem::path& file, const Sink& sink) const;
  DataStats tokenize_corpus(const std::vector<std::filesystem::path>& files,
                            const Sink& sink) const;
  // The split from the cache when there, else made by `produce` (into the cache when
  // there is a cache folder).
  Split cached(const std::filesystem::path& source, const std::string& name,
               const std::function<DataStats(const Sink&)>& produce) const;

  std::filesystem::path tokenizer_dir_;
  DataOptions options_;
  // A GGUF model's tokenizer files, made from its metadata (empty for a folder).
  std::optional<io::TokenizerFiles> gguf_files_;
  tokenizer::Tokenizer tok_;
  std::optional<chat::ChatTemplate> chat_;
  SampleTokenizer samples_;
};

// The chat template samples are rendered with: the one `spec` names (DataOptions::
// chat_template) seeing the tokenizer's special tokens, else the tokenizer's own; a GGUF
// model's comes from its metadata (gguf: its tokenizer files).
std::optional<chat::ChatTemplate> load_chat_template(const std::filesystem::path& tokenizer_dir,
                                                     const std::optional<io::TokenizerFiles>& gguf,
                                                     const std::string& spec);

// The records of `data` at `indices`, copied into memory.
TokenizedData select(const TokenizedData& data, const std::vector<int64_t>& indices);

}  // namespace ft::data

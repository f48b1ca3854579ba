#include "ft/data/dataset.h"

#include <cstdlib>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include <unistd.h>

#include "ft/core/error.h"
#include "ft/data/batching.h"
#include "ft/data/record_reader.h"
#include "ft/io/gguf.h"  // defines: is_gguf_file

namespace ft::data {
namespace fs = std::filesystem;
namespace {

using Json = nlohmann::ordered_json;

constexpr size_t kMaxReasons = 20;
constexpr int kCacheVersion = 1;

// A 64-bit hash for cache keys, eight bytes a step so that hashing a large dataset
// costs little next to reading it; not a defence against crafted collisions.
struct Hasher {
  uint64_t h = 0xcbf29ce484222325ull;
  void mix(uint64_t w) {
    h = (h ^ w) * 0x9E3779B97F4A7C15ull;
    h ^= h >> 32;
  }
  void add(const void* data, size_t n) {
    auto* p = static_cast<const unsigned char*>(data);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      mix(w);
    }
    uint64_t tail = 0;
    std::memcpy(&tail, p + i, n - i);
    mix(tail ^ (uint64_t(n - i) << 56));
  }
  void add(const std::string& s) {
    uint64_t n = s.size();
    add(&n, 8);
    add(s.data(), s.size());
  }
  void add_file(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      add("<absent>");
      return;
    }
    std::vector<char> buf(1 << 20);
    while (in) {
      in.read(buf.data(), std::streamsize(buf.size()));
      add(buf.data(), size_t(in.gcount()));
    }
  }
};

void count(DataStats& stats, const Sample& s) {
  ++stats.records;
  stats.tokens += int64_t(s.ids.size());
  stats.trained_tokens += trained_tokens(s);
  stats.truncated += s.truncated ? 1 : 0;
}

Json stats_to_json(const DataStats& s) {
  return Json{
      {"format", format_name(s.format)},    {"records", s.records},     {"tokens", s.tokens},
      {"trained_tokens", s.trained_tokens}, {"truncated", s.truncated}, {"skipped", s.skipped},
      {"skip_reasons", s.skip_reasons}};
}

DataStats stats_from_json(const Json& j) {
  DataStats s;
  s.format = parse_format(j.at("format").get<std::string>());
  s.records = j.at("records");
  s.tokens = j.at("tokens");
  s.trained_tokens = j.at("trained_tokens");
  s.truncated = j.at("truncated");
  s.skipped = j.at("skipped");
  s.skip_reasons = j.at("skip_reasons").get<std::vector<std::string>>();
  return s;
}

constexpr const char* kRecordExtensions[] = {".jsonl",   ".json",      ".jsonl.gz",
                                             ".json.gz", ".jsonl.zst", ".json.zst"};

bool is_record_file(const fs::path& file) {
  const std::string name = file.filename().string();
  for (const char* ext : kRecordExtensions)
    if (name.size() > std::strlen(ext) && name.ends_with(ext)) return true;
  return false;
}

// The record files directly in dir, sorted by name.
std::vector<fs::path> record_files(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.is_regular_file() && is_record_file(entry.path())) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

// The counts of a split's samples, recomputed (after selecting or joining samples).
void count_samples(Split& s) {
  s.stats.records = int64_t(s.data.size());
  s.stats.tokens = s.stats.trained_tokens = 0;
  for (size_t i = 0; i < s.data.size(); ++i) {
    s.stats.tokens += s.data.length(i);
    auto mask = s.data.mask(i);
    for (size_t t = 1; t < mask.size(); ++t) s.stats.trained_tokens += mask[t];
  }
}

// Appends the samples of `from` at `indices` (all of them when null) to `to`.
void append(TokenizedData& to, const TokenizedData& from, const std::vector<int64_t>* indices) {
  const size_t n = indices ? indices->size() : from.size();
  for (size_t k = 0; k < n; ++k) {
    const size_t i = indices ? size_t((*indices)[k]) : k;
    Sample s;
    auto ids = from.ids(i);
    auto mask = from.mask(i);
    s.ids.assign(ids.begin(), ids.end());
    s.mask.assign(mask.begin(), mask.end());
    to.add(s, from.line(i));
  }
}

// The splits joined into one named `name` (samples in order, skip counts added).
Split join_splits(std::vector<Split>& parts, const std::string& name, const fs::path& source) {
  if (parts.size() == 1) {
    parts[0].name = name;
    return std::move(parts[0]);
  }
  Split out{name, source, TokenizedData(), DataStats()};
  out.stats.format = parts.front().stats.format;
  out.stats.from_cache = true;
  for (Split& part : parts) {
    append(out.data, part.data, nullptr);
    out.stats.truncated += part.stats.truncated;
    out.stats.skipped += part.stats.skipped;
    out.stats.from_cache = out.stats.from_cache && part.stats.from_cache;
    for (auto& reason : part.stats.skip_reasons)
      if (out.stats.skip_reasons.size() < 5) out.stats.skip_reasons.push_back(reason);
  }
  count_samples(out);
  return out;
}

// The documents of a corpus folder, sorted so their order does not depend on the
// file system.
std::vector<fs::path> corpus_files(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    std::string ext = entry.path().extension().string();
    if (ext == ".md" || ext == ".txt" || ext == ".markdown") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

std::optional<chat::ChatTemplate> load_chat_template(const fs::path& tokenizer_dir,
                                                     const std::optional<io::TokenizerFiles>& gguf,
                                                     const std::string& spec) {
  if (spec.empty())
    return gguf ? io::gguf_chat_template(*gguf)
                : chat::ChatTemplate::from_tokenizer_dir_if_any(tokenizer_dir);
  nlohmann::ordered_json config = nlohmann::ordered_json::object();
  if (gguf) {
    config = nlohmann::ordered_json::parse(gguf->tokenizer_config_json);
  } else if (fs::exists(tokenizer_dir / "tokenizer_config.json")) {
    std::ifstream in(tokenizer_dir / "tokenizer_config.json", std::ios::binary);
    config = nlohmann::ordered_json::parse(in, nullptr, false);
    FT_CHECK(!config.is_discarded(), "data", (tokenizer_dir / "tokenizer_config.json").string(),
             ": not valid JSON");
  }
  return chat::ChatTemplate::from_spec(
      spec, chat::ChatTemplate::special_tokens(config, gguf ? fs::path() : tokenizer_dir));
}

DataLoader::DataLoader(const fs::path& tokenizer_dir, DataOptions options)
    : tokenizer_dir_(tokenizer_dir),
      options_(std::move(options)),
      gguf_files_(io::is_gguf_file(tokenizer_dir)
                      ? std::optional(io::gguf_tokenizer_files(io::read_gguf_file(tokenizer_dir)))
                      : std::nullopt),
      tok_(gguf_files_ ? io::gguf_tokenizer(*gguf_files_, tokenizer_dir.string())
                       : tokenizer::Tokenizer::from_dir(tokenizer_dir)),
      chat_(load_chat_template(tokenizer_dir, gguf_files_, options_.chat_template)),
      samples_(tok_, chat_ ? &*chat_ : nullptr, options_.sample) {
  FT_CHECK(options_.valid_fraction >= 0 && options_.valid_fraction < 1, "data",
           "valid_fraction must be in [0, 1), got ", options_.valid_fraction);
}

fs::path DataLoader::cache_file(const fs::path& file) const {
  Hasher h;
  h.add("ft-data-cache-" + std::to_string(kCacheVersion));
  if (fs::is_directory(file)) {
    for (const fs::path& doc : corpus_files(file)) {
      h.add(fs::relative(doc, file).string());
      h.add_file(doc);
    }
  } else {
    h.add_file(file);
  }
  if (gguf_files_) {
    h.add(gguf_files_->tokenizer_json);
    h.add(gguf_files_->tokenizer_config_json);
  } else {
    for (const char* name :
         {"tokenizer.json", "tokenizer.json.gz", "tokenizer_config.json", "special_tokens_map.json",
          "generation_config.json", "chat_template.jinja"}) {
      h.add(name);
      h.add_file(tokenizer_dir_ / name);
    }
  }
  if (!options_.chat_template.empty()) h.add("template|" + chat_->source());
  const SampleOptions& so = options_.sample;
  h.add(format_name(options_.format) + "|" + std::to_string(so.mask_prompt) + "|" +
        std::to_string(so.use_template) + "|" + std::to_string(so.max_seq_length) + "|" +
        std::to_string(options_.skip_bad_records));
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h.h));
  return options_.cache_dir / (file.stem().string() + "-" + hex + ".tok");
}

fs::path default_cache_dir() {
  if (const char* dir = std::getenv("FT_CACHE_DIR"); dir && *dir) return dir;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg)
    return fs::path(xdg) / "ft" / "data";
  if (const char* home = std::getenv("HOME"); home && *home)
    return fs::path(home) / ".cache" / "ft" / "data";
  return fs::temp_directory_path() / "ft-cache" / "data";
}

Split DataLoader::load_file(const fs::path& file, const std::string& name) const {
  FT_CHECK(fs::is_regular_file(file), "data", file.string(), ": no such file");
  return cached(file, name, [&](const Sink& sink) { return tokenize_file(file, sink); });
}

Split DataLoader::cached(const fs::path& source, const std::string& name,
                         const std::function<DataStats(const Sink&)>& produce) const {
  Split split{name, source, TokenizedData(), DataStats()};
  if (options_.cache_dir.empty()) {
    split.stats = produce([&](const Sample& s, int64_t line) { split.data.add(s, line); });
    return split;
  }
  fs::path file = cache_file(source);
  fs::path meta = file;
  meta += ".json";
  if (fs::exists(file) && fs::exists(meta)) {
    std::ifstream in(meta);
    split.data = TokenizedData::map(file);
    split.stats = stats_from_json(Json::parse(in));
    split.stats.from_cache = true;
    return split;
  }
  // Samples stream to the cache file as they are made, then the file is mapped.
  fs::create_directories(options_.cache_dir);
  TokenizedWriter writer(file);
  split.stats = produce([&](const Sample& s, int64_t line) { writer.add(s, line); });
  writer.finish();
  fs::path tmp = meta;
  tmp += ".tmp" + std::to_string(::getpid());
  std::ofstream(tmp) << stats_to_json(split.stats).dump(1);
  fs::rename(tmp, meta);
  split.data = TokenizedData::map(file);
  return split;
}

DataStats DataLoader::tokenize_file(const fs::path& file,
                                    const std::function<void(const Sample&, int64_t)>& sink) const {
  RecordReader reader(file);  // Note [Record files]
  DataStats stats;
  int64_t kept = 0;
  Format format = options_.format;
  std::string text;
  int64_t line_no = 0;
  int64_t non_blank = 0;
  while (reader.next_record(text, line_no)) {
    ++non_blank;
    std::string where = file.string() + ":" + std::to_string(line_no);
    try {
      const Json record = parse_record(text, where);
      // The first record fixes the format (when not given) for the whole file.
      if (format == Format::kAuto) format = detect_format(record, where);
      Sample sample = samples_.tokenize(to_record(record, format, where), where);
      count(stats, sample);
      sink(sample, line_no);
      ++kept;
    } catch (const Error& e) {
      if (!options_.skip_bad_records) throw;
      ++stats.skipped;
      if (stats.skip_reasons.size() < kMaxReasons) stats.skip_reasons.push_back(e.fact());
    }
  }
  FT_CHECK(non_blank > 0, "data", file.string(), ": empty file (no records)");
  FT_CHECK(kept > 0, "data", file.string(), ": every record was skipped (", stats.skipped,
           "); first: ", stats.skip_reasons.empty() ? "" : stats.skip_reasons[0]);
  stats.format = format;
  return stats;
}

std::vector<Split> DataLoader::load(const fs::path& path) const {
  FT_CHECK(fs::exists(path), "data", path.string(), ": no such file or folder");
  std::vector<Split> out;
  Split all;
  if (fs::is_directory(path)) {
    bool any = false;
    // Each split in one file: JSONL or a JSON array, plain, gzip or zstd (Note [Record
    // files]).
    for (const char* name : {"train", "valid", "test"}) {
      std::vector<fs::path> found;
      for (const char* ext : kRecordExtensions)
        if (fs::exists(path / (std::string(name) + ext)))
          found.push_back(path / (std::string(name) + ext));
      if (found.empty()) continue;
      FT_CHECK(found.size() == 1, "data", path.string(), ": both ", found[0].filename().string(),
               " and ", found[1].filename().string(), " hold the ", name, " split; keep one");
      any = true;
      out.push_back(load_file(found[0], name));
    }
    if (any) return out;
    // Otherwise its record files together are the data, or its text files a corpus.
    const std::vector<fs::path> files = record_files(path);
    if (files.empty()) {
      out.push_back(load_corpus(path));
      return out;
    }
    std::vector<Split> parts;
    for (const fs::path& file : files) parts.push_back(load_file(file, "train"));
    all = join_splits(parts, "train", path);
  } else {
    all = load_file(path, "train");
  }
  if (options_.valid_fraction <= 0) {
    out.push_back(std::move(all));
    return out;
  }
  // The valid records are a seeded random subset; both splits keep file order.
  int64_t n = int64_t(all.data.size());
  int64_t n_valid = std::max<int64_t>(1, int64_t(double(n) * options_.valid_fraction + 0.5));
  FT_CHECK(n_valid < n, "data", path.string(), ": ", n,
           " records are too few to split off a valid share of ", options_.valid_fraction);
  std::vector<int64_t> p = permutation(n, options_.seed);
  std::vector<int64_t> valid(p.begin(), p.begin() + n_valid), train(p.begin() + n_valid, p.end());
  std::sort(valid.begin(), valid.end());
  std::sort(train.begin(), train.end());
  for (auto [name, idx] : {std::pair{"train", &train}, std::pair{"valid", &valid}}) {
    Split s{name, path, select(all.data, *idx), DataStats()};
    s.stats.format = all.stats.format;
    s.stats.from_cache = all.stats.from_cache;
    count_samples(s);
    out.push_back(std::move(s));
  }
  out[0].stats.truncated = all.stats.truncated;  // not tracked per record
  out[0].stats.skipped = all.stats.skipped;
  out[0].stats.skip_reasons = all.stats.skip_reasons;
  return out;
}

// Note [Mixtures]
// ~~~~~~~~~~~~~~~
// `--data a.jsonl:0.7 --data b.jsonl:0.3` trains on a mixture. An epoch holds as many
// training records as the sources have together (N), and source i supplies
// round(N * w_i / sum w) of them, at least one: whole passes over a seeded permutation of
// its records, then the start of another, so a small source is repeated and a large one
// sampled, never the same record twice in one pass. The trainer shuffles the epoch as it
// does any data, so the order here (source by source) does not matter. Sources without
// weights are joined as they are (each weighs its size); mixing weighted and unweighted
// sources is refused, as the share of the unweighted ones would be a guess. Valid and test
// splits are joined unweighted: evaluation should see every record once.

DataSource parse_data_source(const std::string& text) {
  DataSource source{text, 0.0};
  std::error_code ec;
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos || fs::exists(text, ec)) return source;
  const std::string weight = text.substr(colon + 1);
  char* end = nullptr;
  const double w = std::strtod(weight.c_str(), &end);
  if (weight.empty() || end != weight.c_str() + weight.size()) return source;  // part of a path
  FT_CHECK(std::isfinite(w) && w > 0, "data", text, ": the weight after ':' must be a positive ",
           "number, got ", weight);
  source.path = text.substr(0, colon);
  source.weight = w;
  return source;
}

std::vector<Split> DataLoader::load_all(const std::vector<DataSource>& sources) const {
  FT_CHECK(!sources.empty(), "data", "no data given");
  const bool weighted = sources.front().weight > 0;
  for (const DataSource& s : sources)
    FT_CHECK((s.weight > 0) == weighted, "data", "give every data source a weight (",
             s.path.string(), " has ", s.weight > 0 ? "one" : "none",
             ") or none (each then weighs its size)");
  if (sources.size() == 1) return load(sources.front().path);

  std::vector<std::vector<Split>> loaded;
  std::string shown;
  for (const DataSource& s : sources) {
    loaded.push_back(load(s.path));
    shown += (shown.empty() ? "" : " + ") + s.path.string();
    if (weighted) {
      std::ostringstream weight;
      weight << ':' << s.weight;
      shown += weight.str();
    }
  }
  std::vector<Split> out;
  for (const char* name : {"train", "valid", "test"}) {
    std::vector<Split> parts;
    std::vector<double> weights;
    for (size_t i = 0; i < loaded.size(); ++i)
      for (Split& split : loaded[i])
        if (split.name == name) {
          parts.push_back(std::move(split));
          weights.push_back(sources[i].weight);
        }
    if (parts.empty()) continue;
    if (!weighted || std::string(name) != "train") {
      out.push_back(join_splits(parts, name, shown));
      continue;
    }
    int64_t total = 0;
    double weight_sum = 0;
    for (size_t i = 0; i < parts.size(); ++i) {
      total += int64_t(parts[i].data.size());
      weight_sum += weights[i];
    }
    Split mixed{name, shown, TokenizedData(), DataStats()};
    mixed.stats.format = parts.front().stats.format;
    mixed.stats.from_cache = true;
    for (size_t i = 0; i < parts.size(); ++i) {
      const int64_t size = int64_t(parts[i].data.size());
      FT_CHECK(size > 0, "data", parts[i].source.string(), ": no training records to mix");
      const int64_t want =
          std::max<int64_t>(1, std::llround(double(total) * weights[i] / weight_sum));
      std::vector<int64_t> draw;
      for (uint64_t pass = 0; int64_t(draw.size()) < want; ++pass) {
        const std::vector<int64_t> p = permutation(size, options_.seed + 1000003 * (i + 1) + pass);
        draw.insert(draw.end(), p.begin(),
                    p.begin() + std::min<int64_t>(size, want - int64_t(draw.size())));
      }
      append(mixed.data, parts[i].data, &draw);
      mixed.stats.truncated += parts[i].stats.truncated;
      mixed.stats.skipped += parts[i].stats.skipped;
      mixed.stats.from_cache = mixed.stats.from_cache && parts[i].stats.from_cache;
    }
    count_samples(mixed);
    out.push_back(std::move(mixed));
  }
  return out;
}

Split DataLoader::load_corpus(const fs::path& dir) const {
  std::vector<fs::path> files = corpus_files(dir);
  FT_CHECK(!files.empty(), "data", dir.string(),
           ": no train/valid/test .jsonl or .json files (gzip allowed) and no .md or .txt "
           "files");
  return cached(dir, "train", [&](const Sink& sink) { return tokenize_corpus(files, sink); });
}

DataStats DataLoader::tokenize_corpus(const std::vector<fs::path>& files, const Sink& sink) const {
  DataStats stats;
  stats.format = Format::kText;
  int64_t chunk = options_.sample.max_seq_length;
  SampleOptions whole = options_.sample;
  whole.max_seq_length = 0;
  SampleTokenizer documents(tok_, nullptr, whole);
  for (size_t d = 0; d < files.size(); ++d) {
    std::ifstream in(files[d], std::ios::binary);
    FT_CHECK(in, "data", files[d].string(), ": cannot open");
    std::string text((std::istreambuf_iterator<char>(in)), {});
    if (text.find_first_not_of(" \t\r\n") == std::string::npos) continue;
    Record record;
    record.is_text = true;
    record.text = std::move(text);
    Sample doc = documents.tokenize(record, files[d].string());
    int64_t n = int64_t(doc.ids.size());
    int64_t step = chunk > 0 ? chunk : n;
    for (int64_t at = 0; at < n; at += step) {
      Sample piece;
      int64_t end = std::min(n, at + step);
      if (end - at < 2) break;  // a lone token has nothing to predict
      piece.ids.assign(doc.ids.begin() + at, doc.ids.begin() + end);
      piece.mask.assign(size_t(end - at), 1);
      count(stats, piece);
      // The "line" of a corpus chunk is its document's number (1-based).
      sink(piece, int64_t(d + 1));
    }
  }
  FT_CHECK(stats.records > 0, "data", files.front().parent_path().string(),
           ": every document is empty");
  return stats;
}

TokenizedData select(const TokenizedData& data, const std::vector<int64_t>& indices) {
  TokenizedData out;
  for (int64_t i : indices) {
    Sample s;
    auto ids = data.ids(size_t(i));
    auto mask = data.mask(size_t(i));
    s.ids.assign(ids.begin(), ids.end());
    s.mask.assign(mask.begin(), mask.end());
    out.add(s, data.line(size_t(i)));
  }
  return out;
}

}  // namespace ft::data

// Loading files, folders and corpora; bad input; the on-disk cache.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>

#include <zlib.h>
#ifdef FT_HAVE_ZSTD
#include <zstd.h>
#endif

#include "ft/core/error.h"
#include "ft/data/dataset.h"
#include "tests/test_util.h"

namespace {

using Json = nlohmann::ordered_json;
namespace fs = std::filesystem;
using ft::data::DataLoader;
using ft::data::DataOptions;
using ft::data::Format;

fs::path tokenizer_dir(const char* name) {
  return ft::testing::shared_tokenizer(name);
}
fs::path fixture(const std::string& name) {
  return fs::path(FT_TEST_DATA) / "data" / name;
}

std::vector<int32_t> i32(const std::vector<int>& v) {
  return {v.begin(), v.end()};
}
std::vector<int32_t> ids_of(const ft::data::TokenizedData& d, size_t k) {
  return {d.ids(k).begin(), d.ids(k).end()};
}

Json msg(const char* role, const std::string& content) {
  return Json{{"role", role}, {"content", content}};
}

const DataLoader& qwen(bool mask_prompt) {
  static DataLoader* loaders[2] = {nullptr, nullptr};
  if (!loaders[mask_prompt]) {
    DataOptions o;
    o.sample.mask_prompt = mask_prompt;
    loaders[mask_prompt] = new DataLoader(tokenizer_dir("qwen3"), o);
  }
  return *loaders[mask_prompt];
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ft::Error& e) {
    return e.fact();
  }
  return "<no error>";
}

fs::path temp_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("ft_data_test_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

}  // namespace

TEST(Dataset, AlpacaAndShareGptBecomeTheirConversations) {
  FT_REQUIRE_SHARED_TOKENIZERS();
  const auto& l = qwen(true);
  auto alpaca = l.load_file(fixture("alpaca.jsonl"));
  EXPECT_EQ(alpaca.stats.format, Format::kAlpaca);
  ASSERT_EQ(alpaca.data.size(), 2u);
  Json conv = Json::array({msg("user", "Add the numbers.\n\n2 and 3"), msg("assistant", "5")});
  EXPECT_EQ(ids_of(alpaca.data, 0),
            i32(l.tokenizer().encode(l.chat_template()->render(conv), false)));
  auto share = l.load_file(fixture("sharegpt.jsonl"));
  EXPECT_EQ(share.stats.format, Format::kShareGpt);
  Json conv2 = Json::array(
      {msg("system", "Be brief."), msg("user", "Name a color."), msg("assistant", "Blue.")});
  EXPECT_EQ(ids_of(share.data, 1),
            i32(l.tokenizer().encode(l.chat_template()->render(conv2), false)));
  EXPECT_EQ(share.data.line(1), 2);
}

TEST(Dataset, CountsAndBlankLines) {
  FT_REQUIRE_SHARED_TOKENIZERS();
  const auto& l = qwen(true);
  auto chat = l.load_file(fixture("chat.jsonl"));
  EXPECT_EQ(chat.stats.format, Format::kChat);
  ASSERT_EQ(chat.data.size(), 3u);
  EXPECT_EQ(chat.data.line(2), 4);  // line 3 is blank
  int64_t tokens = 0, trained = 0;
  for (size_t k = 0; k < chat.data.size(); ++k) {
    tokens += chat.data.length(k);
    auto m = chat.data.mask(k);
    for (size_t t = 1; t < m.size(); ++t) trained += m[t];
  }
  EXPECT_EQ(chat.stats.tokens, tokens);
  EXPECT_EQ(chat.stats.trained_tokens, trained);
  EXPECT_LT(trained, tokens);
  auto text = qwen(false).load_file(fixture("text.jsonl"));
  EXPECT_EQ(text.stats.format, Format::kText);
  // Text samples end with EOS and train every token after the first.
  EXPECT_EQ(text.data.ids(0).back(), l.tokenizer().eos_token()->id);
  EXPECT_EQ(text.stats.trained_tokens, text.stats.tokens - 4);
}

TEST(Dataset, BadLinesNameFileAndLineOrAreSkipped) {
  FT_REQUIRE_SHARED_TOKENIZERS();
  const auto& l = qwen(false);
  std::string e = error_of([&] { l.load_file(fixture("bad.jsonl")); });
  EXPECT_NE(e.find("bad.jsonl:3: not valid JSON"), std::string::npos) << e;
  DataOptions o;
  o.skip_bad_records = true;
  DataLoader skipping(tokenizer_dir("qwen3"), o);
  auto s = skipping.load_file(fixture("bad.jsonl"));
  EXPECT_EQ(s.stats.records, 3);
  EXPECT_EQ(s.stats.skipped, 2);
  ASSERT_EQ(s.stats.skip_reasons.size(), 2u);
  EXPECT_NE(s.stats.skip_reasons[0].find("bad.jsonl:3"), std::string::npos);
  EXPECT_NE(s.stats.skip_reasons[1].find("bad.jsonl:4: field \"text\" must be a string"),
            std::string::npos)
      << s.stats.skip_reasons[1];
  EXPECT_EQ(s.data.line(2), 5);
  e = error_of([&] { l.load_file(fixture("empty.jsonl")); });
  EXPECT_NE(e.find("empty.jsonl: empty file"), std::string::npos) << e;
  e = error_of([&] { l.load_file(fixture("missing.jsonl")); });
  EXPECT_NE(e.find("no such file"), std::string::npos) << e;
  // A format forced by the user that the records do not have.
  DataOptions forced;
  forced.format = Format::kCompletions;
  e = error_of(
      [&] { DataLoader(tokenizer_dir("qwen3"), forced).load_file(fixture("text.jsonl")); });
  EXPECT_NE(e.find("text.jsonl:1: missing field \"prompt\""), std::string::npos) << e;
}

TEST(Dataset, FolderSplitsAndRatioSplit) {
  FT_REQUIRE_SHARED_TOKENIZERS();
  const auto& l = qwen(false);
  auto splits = l.load(fixture("folder"));
  ASSERT_EQ(splits.size(), 2u);
  EXPECT_EQ(splits[0].name, "train");
  EXPECT_EQ(splits[0].data.size(), 4u);
  EXPECT_EQ(splits[1].name, "valid");
  EXPECT_EQ(splits[1].data.size(), 1u);
  DataOptions o;
  o.valid_fraction = 0.25;
  o.seed = 9;
  DataLoader ratio(tokenizer_dir("qwen3"), o);
  auto two = ratio.load(fixture("text.jsonl"));
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[0].data.size(), 3u);
  ASSERT_EQ(two[1].data.size(), 1u);
  std::set<int64_t> lines;
  for (const auto& s : two)
    for (size_t k = 0; k < s.data.size(); ++k) lines.insert(s.data.line(k));
  EXPECT_EQ(lines, (std::set<int64_t>{1, 2, 3, 4}));
  // The same seed picks the same valid record.
  EXPECT_EQ(ratio.load(fixture("text.jsonl"))[1].data.line(0), two[1].data.line(0));
}

TEST(Dataset, CorpusFolderIsChunkedDocuments) {
  FT_REQUIRE_SHARED_TOKENIZERS();
  DataOptions o;
  o.sample.max_seq_length = 16;
  DataLoader l(tokenizer_dir("qwen3"), o);
  auto splits = l.load(fixture("corpus"));
  ASSERT_EQ(splits.size(), 1u);
  const auto& d = splits[0].data;
  std::ifstream in(fixture("corpus/intro.md"));
  std::string text((std::istreambuf_iterator<char>(in)), {});
  auto expect = i32(l.tokenizer().encode(text, true));
  expect.push_back(l.tokenizer().eos_token()->id);
  std::vector<int32_t> joined;
  int64_t docs = 0;
  for (size_t k = 0; k < d.size(); ++k) {
    EXPECT_LE(d.length(k), 16);
    docs = std::max(docs, d.line(k));
    if (d.line(k) == 1) joined.insert(joined.end(), d.ids(k).begin(), d.ids(k).end());
  }
  EXPECT_EQ(joined, expect);
  EXPECT_EQ(docs, 2);  // intro.md and sub/notes.txt; the .csv is not read
}

TEST(Dataset, CacheHitIsIdenticalAndMapped) {
  FT_REQUIRE_SHARED_TOKENIZERS();
  fs::path dir = temp_dir("cache");
  fs::path file = dir / "many.jsonl";
  {
    std::ofstream out(file);
    for (int i = 0; i < 200; ++i) {
      Json conv = Json::array({msg("user", "Question number " + std::to_string(i) + "?"),
                               msg("assistant", "Answer " + std::to_string(i * 7) + ".")});
      out << Json{{"messages", conv}}.dump() << "\n";
    }
  }
  DataOptions o;
  o.sample.mask_prompt = true;
  o.cache_dir = dir / "cache";
  DataLoader l(tokenizer_dir("qwen3"), o);
  auto first = l.load_file(file);
  auto second = l.load_file(file);  // read back from the cache file, not tokenized again
  EXPECT_FALSE(first.stats.from_cache);
  EXPECT_TRUE(second.stats.from_cache);
  EXPECT_TRUE(second.data.is_mapped());
  ASSERT_EQ(first.data.size(), 200u);
  ASSERT_EQ(second.data.size(), 200u);
  for (size_t k = 0; k < 200; ++k) {
    EXPECT_TRUE(std::ranges::equal(first.data.ids(k), second.data.ids(k)));
    EXPECT_TRUE(std::ranges::equal(first.data.mask(k), second.data.mask(k)));
  }
  EXPECT_EQ(first.stats.trained_tokens, second.stats.trained_tokens);
  // Other options or other bytes give another key.
  DataOptions unmasked = o;
  unmasked.sample.mask_prompt = false;
  EXPECT_NE(DataLoader(tokenizer_dir("qwen3"), unmasked).cache_file(file), l.cache_file(file));
  fs::path before = l.cache_file(file);
  std::ofstream(file, std::ios::app)
      << R"({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]})"
      << "\n";
  EXPECT_NE(l.cache_file(file), before);
  EXPECT_EQ(l.load_file(file).data.size(), 201u);
  fs::remove_all(dir);
}

TEST(Dataset, CorpusIsCachedByItsDocuments) {
  FT_REQUIRE_SHARED_TOKENIZERS();
  fs::path dir = temp_dir("corpus_cache");
  fs::copy(fixture("corpus"), dir / "corpus", fs::copy_options::recursive);
  DataOptions o;
  o.sample.max_seq_length = 16;
  o.cache_dir = dir / "cache";
  DataLoader l(tokenizer_dir("qwen3"), o);
  auto first = l.load(dir / "corpus");
  auto second = l.load(dir / "corpus");
  ASSERT_EQ(second.size(), 1u);
  EXPECT_TRUE(second[0].stats.from_cache);
  ASSERT_EQ(first[0].data.size(), second[0].data.size());
  for (size_t k = 0; k < first[0].data.size(); ++k)
    EXPECT_TRUE(std::ranges::equal(first[0].data.ids(k), second[0].data.ids(k)));
  fs::path before = l.cache_file(dir / "corpus");
  std::ofstream(dir / "corpus" / "sub" / "notes.txt", std::ios::app) << "More.\n";
  EXPECT_NE(l.cache_file(dir / "corpus"), before);
  EXPECT_FALSE(l.load(dir / "corpus")[0].stats.from_cache);
  fs::remove_all(dir);
}

// Note [Record files]: a JSON array of records, and gzip, read as the JSONL file of the same
// records, element by element.
TEST(Dataset, JsonArraysAndGzipReadAsTheirJsonl) {
  FT_REQUIRE_SHARED_TOKENIZERS();
  const auto& l = qwen(true);
  const fs::path dir = temp_dir("arrays");
  Json records = Json::array();
  {
    std::ifstream in(fixture("chat.jsonl"));
    for (std::string line; std::getline(in, line);)
      if (line.find_first_not_of(" \t\r") != std::string::npos)
        records.push_back(Json::parse(line));
  }
  // Brackets, commas, quotes and backslashes inside strings do not end an element.
  records.push_back(Json{{"messages", Json::array({msg("user", "a ] b } c, \"d\" \\ e [ {"),
                                                   msg("assistant", "],},\\\"")})}});
  std::string jsonl;
  for (const auto& r : records) jsonl += r.dump() + "\n";
  std::ofstream(dir / "chat.jsonl") << jsonl;
  std::ofstream(dir / "chat.json") << "\xEF\xBB\xBF" << records.dump(2) << "\n";
  auto gzip = [&](const fs::path& file, const std::string& text) {
    gzFile f = gzopen(file.c_str(), "wb");
    gzwrite(f, text.data(), unsigned(text.size()));
    gzclose(f);
  };
  gzip(dir / "chat.jsonl.gz", jsonl);
  gzip(dir / "chat.json.gz", records.dump(2));
#ifdef FT_HAVE_ZSTD
  auto zstd = [&](const fs::path& file, const std::string& text) {
    std::string out(ZSTD_compressBound(text.size()), '\0');
    out.resize(ZSTD_compress(out.data(), out.size(), text.data(), text.size(), 3));
    std::ofstream(file, std::ios::binary) << out;
    return out;
  };
  const std::string packed = zstd(dir / "chat.jsonl.zst", jsonl);
  zstd(dir / "chat.json.zst", records.dump(2));
  // Cut short, and damaged: one error naming the file.
  std::ofstream(dir / "cut.jsonl.zst", std::ios::binary) << packed.substr(0, packed.size() / 2);
  EXPECT_NE(error_of([&] { l.load_file(dir / "cut.jsonl.zst"); }).find("cut short"),
            std::string::npos);
  std::string damaged = packed;
  for (size_t i = 8; i < damaged.size(); i += 3) damaged[i] = char(damaged[i] ^ 0x5A);
  std::ofstream(dir / "bad.jsonl.zst", std::ios::binary) << damaged;
  EXPECT_NE(error_of([&] { l.load_file(dir / "bad.jsonl.zst"); }).find("bad.jsonl.zst"),
            std::string::npos);
#endif
  {
    std::ifstream in(dir / "chat.jsonl.gz", std::ios::binary);
    std::string gz((std::istreambuf_iterator<char>(in)), {});
    std::ofstream(dir / "cut.jsonl.gz", std::ios::binary) << gz.substr(0, gz.size() / 2);
  }
  EXPECT_NE(error_of([&] { l.load_file(dir / "cut.jsonl.gz"); }).find("cut.jsonl.gz"),
            std::string::npos);

  const auto want = l.load_file(dir / "chat.jsonl");
  ASSERT_EQ(want.data.size(), records.size());
  std::vector<std::string> forms = {"chat.json", "chat.jsonl.gz", "chat.json.gz"};
#ifdef FT_HAVE_ZSTD
  forms.insert(forms.end(), {"chat.jsonl.zst", "chat.json.zst"});
#endif
  for (const std::string& name : forms) {
    SCOPED_TRACE(name);
    const auto got = l.load_file(dir / name);
    EXPECT_EQ(got.stats.format, want.stats.format);
    ASSERT_EQ(got.data.size(), want.data.size());
    for (size_t k = 0; k < want.data.size(); ++k) {
      EXPECT_EQ(ids_of(got.data, k), ids_of(want.data, k)) << k;
      auto a = got.data.mask(k), b = want.data.mask(k);
      EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin(), b.end())) << k;
    }
  }
  // An element's line is the one it starts on: '[' on line 1, the first object on line 2.
  EXPECT_EQ(l.load_file(dir / "chat.json").data.line(0), 2);
  // A folder's splits in any of these forms; two forms of one split are refused.
  const fs::path folder = dir / "folder";
  fs::create_directories(folder);
  fs::copy_file(dir / "chat.json.gz", folder / "train.json.gz");
  fs::copy_file(dir / "chat.jsonl", folder / "valid.jsonl");
  const auto splits = l.load(folder);
  ASSERT_EQ(splits.size(), 2u);
  EXPECT_EQ(splits[0].name, "train");
  EXPECT_EQ(splits[1].name, "valid");
  EXPECT_EQ(splits[0].data.size(), want.data.size());
  fs::copy_file(dir / "chat.json", folder / "train.json");
  EXPECT_NE(error_of([&] { l.load(folder); }).find("both train.json and train.json.gz"),
            std::string::npos);
  fs::remove_all(dir);
}

TEST(Dataset, BrokenJsonArraysAreOneError) {
  FT_REQUIRE_SHARED_TOKENIZERS();
  const auto& l = qwen(false);
  const fs::path dir = temp_dir("broken_arrays");
  const std::pair<std::string, std::string> cases[] = {
      {"[", "the JSON array is not closed"},
      {"[{\"text\": \"a\"},", "the JSON array is not closed"},
      {"[{\"text\": \"a\"},\n]", "a comma before the JSON array's closing bracket"},
      {"[{\"text\": \"a\"}] x", "text after the JSON array's closing bracket"},
      {"[{\"text\": \"a\"}}]", "a stray '}' in the JSON array"},
      {"[{\"text\": \"a\"},,{\"text\": \"b\"}]", "an empty element in the JSON array"},
      {"[ ]", "empty file"},
      {"[\"just a string\"]", "a record must be a JSON object"},
      {"[{\"text\": \"a\n", "the JSON array is not closed"},
  };
  int i = 0;
  for (const auto& [text, fact] : cases) {
    SCOPED_TRACE(text);
    const fs::path file = dir / ("case" + std::to_string(i++) + ".json");
    std::ofstream(file) << text;
    const std::string e = error_of([&] { l.load_file(file); });
    EXPECT_NE(e.find(fact), std::string::npos) << e;
    EXPECT_NE(e.find(file.filename().string()), std::string::npos) << e;
  }
  fs::remove_all(dir);
}

namespace {

// n records {"text": "<tag> <i>"}, one per line; their lines tell the records apart.
fs::path tagged_file(const fs::path& dir, const std::string& name, const std::string& tag, int n) {
  std::ofstream out(dir / name);
  for (int i = 0; i < n; ++i) out << Json{{"text", tag + " " + std::to_string(i)}}.dump() << "\n";
  return dir / name;
}

}  // namespace

TEST(Dataset, DataSourcesAreAPathWithAnOptionalWeight) {
  using ft::data::parse_data_source;
  EXPECT_EQ(parse_data_source("a.jsonl:0.7").path, "a.jsonl");
  EXPECT_EQ(parse_data_source("a.jsonl:0.7").weight, 0.7);
  EXPECT_EQ(parse_data_source("a.jsonl").weight, 0.0);
  EXPECT_EQ(parse_data_source("c:/x.jsonl").path, "c:/x.jsonl");  // not a number: a path
  EXPECT_EQ(error_of([] { parse_data_source("a.jsonl:-1"); }),
            "a.jsonl:-1: the weight after ':' must be a positive number, got -1");
  EXPECT_EQ(error_of([] { parse_data_source("a.jsonl:0"); }),
            "a.jsonl:0: the weight after ':' must be a positive number, got 0");
  // A file whose name ends in ":2" is that file.
  const fs::path dir = temp_dir("colon");
  tagged_file(dir, "b.jsonl:2", "b", 1);
  EXPECT_EQ(parse_data_source((dir / "b.jsonl:2").string()).weight, 0.0);
}

TEST(Dataset, WeightedSourcesMixByShareAndUnweightedOnesJoin) {
  FT_REQUIRE_SHARED_TOKENIZERS();
  const fs::path dir = temp_dir("mixture");
  const fs::path a = tagged_file(dir, "a.jsonl", "alpha", 8);
  const fs::path b = tagged_file(dir, "b.jsonl", "beta", 40);
  const auto& l = qwen(false);
  const auto first_piece = [&](const ft::data::TokenizedData& d, size_t k) { return d.ids(k)[0]; };
  const int32_t alpha = first_piece(l.load(a)[0].data, 0);

  // 48 records an epoch: 3/4 from a (8 records: 36 draws, each 4 or 5 times), 1/4 from
  // b (12 of its 40, each once).
  auto mixed = l.load_all({{a, 3.0}, {b, 1.0}});
  ASSERT_EQ(mixed.size(), 1u);
  const auto& m = mixed[0].data;
  ASSERT_EQ(m.size(), 48u);
  EXPECT_EQ(mixed[0].stats.records, 48);
  std::map<int64_t, int> from_a, from_b;
  for (size_t k = 0; k < m.size(); ++k) ++(first_piece(m, k) == alpha ? from_a : from_b)[m.line(k)];
  EXPECT_EQ(from_a.size(), 8u);
  for (const auto& [line, times] : from_a) EXPECT_TRUE(times == 4 || times == 5) << line;
  EXPECT_EQ(from_b.size(), 12u);
  for (const auto& [line, times] : from_b) EXPECT_EQ(times, 1) << line;
  // The same seed draws the same records.
  const auto again = l.load_all({{a, 3.0}, {b, 1.0}});
  for (size_t k = 0; k < m.size(); ++k) EXPECT_EQ(again[0].data.line(k), m.line(k));

  // Without weights the sources are joined whole, in order.
  auto joined = l.load_all({{a, 0.0}, {b, 0.0}});
  ASSERT_EQ(joined[0].data.size(), 48u);
  EXPECT_EQ(first_piece(joined[0].data, 7), alpha);
  EXPECT_NE(first_piece(joined[0].data, 8), alpha);
  EXPECT_EQ(joined[0].data.line(8), 1);

  EXPECT_EQ(error_of([&] {
              l.load_all({{a, 1.0}, {b, 0.0}});
            }),
            "give every data source a weight (" + b.string() +
                " has none) or none (each then weighs its size)");
}

TEST(Dataset, AFolderOfRecordFilesIsTheirRecordsTogether) {
  FT_REQUIRE_SHARED_TOKENIZERS();
  const fs::path dir = temp_dir("record_folder");
  tagged_file(dir, "part-2.jsonl", "two", 3);
  tagged_file(dir, "part-1.jsonl", "one", 2);
  {
    std::ofstream out(dir / "part-3.json");
    out << R"([{"text": "three 0"}])";
  }
  std::ofstream(dir / "notes.md") << "not data";
  auto splits = qwen(false).load(dir);
  ASSERT_EQ(splits.size(), 1u);
  EXPECT_EQ(splits[0].data.size(), 6u);
  // Files in name order, records in file order.
  std::vector<int64_t> lines;
  for (size_t k = 0; k < splits[0].data.size(); ++k) lines.push_back(splits[0].data.line(k));
  EXPECT_EQ(lines, (std::vector<int64_t>{1, 2, 1, 2, 3, 1}));
  EXPECT_EQ(splits[0].stats.records, 6);
}

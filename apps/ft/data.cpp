// ft data: what a dataset becomes for training. Shows the detected format, counts,
// token-length statistics and one sample with its trained tokens marked (ANSI colour on
// a terminal, [[ ]] otherwise); --json prints one JSON object for scripts.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <iostream>

#include <nlohmann/json.hpp>

#include "apps/ft/commands.h"
#include "apps/ft/sample_options.h"
#include "ft/data/dataset.h"

namespace ft::cli {
namespace {

struct DataCommandOptions {
  std::string tokenizer;
  std::string data;
  int max_seq_length = 0;
  SampleCliOptions samples;
  double valid_fraction = 0.0;
  std::string cache_dir = data::default_cache_dir().string();
  bool no_cache = false;
  bool json = false;
  bool colour = false;
};

nlohmann::ordered_json length_stats(const data::TokenizedData& d) {
  std::vector<int64_t> lengths;
  for (size_t k = 0; k < d.size(); ++k) lengths.push_back(d.length(k));
  std::sort(lengths.begin(), lengths.end());
  // Nearest-rank percentile.
  auto pct = [&](double p) {
    size_t rank = size_t(std::max(1.0, std::ceil(p / 100.0 * double(lengths.size()))));
    return lengths[std::min(rank, lengths.size()) - 1];
  };
  double mean = 0;
  for (int64_t n : lengths) mean += double(n);
  mean /= double(lengths.size());
  return {{"min", lengths.front()}, {"mean", std::round(mean * 100) / 100},
          {"p50", pct(50)},         {"p90", pct(90)},
          {"p99", pct(99)},         {"max", lengths.back()}};
}

// The sample's text, each run of trained tokens between markers.
std::string marked_text(const data::TokenizedData& d, size_t k, const tokenizer::Tokenizer& tok,
                        bool colour) {
  const char* open = colour ? "\x1b[32m" : "[[";
  const char* close = colour ? "\x1b[0m" : "]]";
  auto ids = d.ids(k);
  auto mask = d.mask(k);
  std::string out;
  std::vector<int> run;
  bool trained = false;
  auto flush = [&] {
    if (run.empty()) return;
    std::string text = tok.decode(run);
    out += trained ? open + text + close : text;
    run.clear();
  };
  for (size_t t = 0; t < ids.size(); ++t) {
    bool m = t > 0 && mask[t];  // token 0 is never a target
    if (m != trained) {
      flush();
      trained = m;
    }
    run.push_back(ids[t]);
  }
  flush();
  return out;
}

void run(const DataCommandOptions& opt) {
  data::DataOptions o = sample_data_options(opt.samples, opt.max_seq_length);
  o.valid_fraction = opt.valid_fraction;
  if (!opt.no_cache) o.cache_dir = opt.cache_dir;
  data::DataLoader loader(opt.tokenizer, o);
  std::vector<data::Split> splits = loader.load(opt.data);

  nlohmann::ordered_json out;
  out["splits"] = nlohmann::ordered_json::array();
  for (const auto& s : splits) {
    const auto& st = s.stats;
    out["splits"].push_back({{"name", s.name},
                             {"path", s.source.string()},
                             {"format", data::format_name(st.format)},
                             {"records", st.records},
                             {"tokens", st.tokens},
                             {"trained_tokens", st.trained_tokens},
                             {"truncated", st.truncated},
                             {"skipped", st.skipped},
                             {"skip_reasons", st.skip_reasons},
                             {"from_cache", st.from_cache},
                             {"lengths", length_stats(s.data)}});
  }
  const auto& first = splits.front().data;
  std::vector<int32_t> ids(first.ids(0).begin(), first.ids(0).end());
  std::vector<int> mask(first.mask(0).begin(), first.mask(0).end());
  if (opt.json) {
    out["sample"] = {{"line", first.line(0)},
                     {"text", marked_text(first, 0, loader.tokenizer(), false)},
                     {"ids", ids},
                     {"mask", mask}};
    std::cout << out.dump(2) << "\n";
    return;
  }
  for (const auto& s : out["splits"]) {
    std::cout << s["name"].get<std::string>() << ": " << s["path"].get<std::string>() << "\n"
              << "  format          " << s["format"].get<std::string>()
              << (s["from_cache"].get<bool>() ? " (from cache)" : "") << "\n"
              << "  records         " << s["records"] << "\n"
              << "  tokens          " << s["tokens"] << "\n"
              << "  trained tokens  " << s["trained_tokens"] << "\n"
              << "  truncated       " << s["truncated"] << "\n"
              << "  skipped         " << s["skipped"] << "\n";
    for (const auto& r : s["skip_reasons"]) std::cout << "    " << r.get<std::string>() << "\n";
    const auto& len = s["lengths"];
    std::cout << "  length          min " << len["min"] << "  mean " << len["mean"] << "  p50 "
              << len["p50"] << "  p90 " << len["p90"] << "  p99 " << len["p99"] << "  max "
              << len["max"] << "\n";
  }
  bool corpus = std::filesystem::is_directory(splits.front().source);
  std::cout << "\nsample (" << splits.front().source.string()
            << (corpus ? ", document " : ", record on line ") << first.line(0)
            << ", trained tokens " << (opt.colour ? "in green" : "in [[ ]]") << "):\n"
            << marked_text(first, 0, loader.tokenizer(), opt.colour) << "\n";
}

}  // namespace

void add_data_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("data", "Show what a dataset becomes for training");
  auto opt = std::make_shared<DataCommandOptions>();
  cmd->add_option("--tokenizer", opt->tokenizer, "Tokenizer folder")->required();
  cmd->add_option("--data", opt->data,
                  "JSONL file, folder with train/valid/test.jsonl, or folder of .md/.txt")
      ->required();
  cmd->add_option("--max-seq-length", opt->max_seq_length,
                  "Truncate samples to this many tokens (0: no limit)");
  add_sample_options(cmd, opt->samples, "Train on completions / assistant turns only");
  cmd->add_option("--valid-fraction", opt->valid_fraction,
                  "Split this share of one file off as the valid split");
  cmd->add_option(
         "--cache-dir", opt->cache_dir,
         "Cache tokenized data here (default: $FT_CACHE_DIR, else $XDG_CACHE_HOME/ft/data, "
         "else ~/.cache/ft/data)")
      ->capture_default_str();
  cmd->add_flag("--no-cache", opt->no_cache, "Tokenize in memory; write no cache");
  cmd->add_flag("--json", opt->json, "Print one JSON object");
  cmd->callback([opt] {
    opt->colour = ::isatty(STDOUT_FILENO) != 0;
    run(*opt);
  });
}

}  // namespace ft::cli

// Encoding speed of ft's tokenizer on one core, to compare with bench/tokenize_hf.py (the
// Hugging Face tokenizers library) on the same file:
//   ./build/bench/bench_tokenize DIR TEXT_FILE [PASSES]
// The text is encoded whole in one call, then split into paragraphs (at blank lines) and
// encoded one paragraph per call; each pass is timed. It also prints the token count and a
// checksum of the ids, which must equal the Python side's.
//
// The English text used so far: the Vim manual, cut at 4 MB:
//   cat /usr/share/vim/vim90/doc/*.txt | head -c 4000000 > /tmp/bench_en.txt
//   ./build/bench/bench_tokenize ../shared/tokenizers/llama3 /tmp/bench_en.txt 3
//   export TOKENIZERS_PARALLELISM=false
//   python bench/tokenize_hf.py ../shared/tokenizers/llama3 /tmp/bench_en.txt 3
#include <chrono>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "ft/core/error.h"
#include "ft/tokenizer/tokenizer.h"

namespace {

uint64_t checksum(const std::vector<int>& ids, uint64_t h) {
  for (int id : ids) h = (h * 1000003u) ^ static_cast<uint64_t>(id);
  return h;
}

std::vector<std::string> paragraphs(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find("\n\n", start);
    end = end == std::string::npos ? text.size() : end + 2;
    out.push_back(text.substr(start, end - start));
    start = end;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc < 3) {
    std::cerr << "usage: bench_tokenize TOKENIZER_DIR TEXT_FILE [PASSES]\n";
    return 2;
  }
  const int passes = argc > 3 ? std::stoi(argv[3]) : 3;
  std::ifstream in(argv[2], std::ios::binary);
  FT_CHECK(in, "bench", "cannot open ", argv[2]);
  std::ostringstream s;
  s << in.rdbuf();
  const std::string text = s.str();
  const double mb = text.size() / 1e6;

  using clock = std::chrono::steady_clock;
  auto t0 = clock::now();
  const auto tok = ft::tokenizer::Tokenizer::from_dir(argv[1]);
  std::cout << "load: " << std::chrono::duration<double>(clock::now() - t0).count() << " s\n";

  for (int pass = 0; pass < passes; ++pass) {
    t0 = clock::now();
    const auto ids = tok.encode(text, false);
    const double secs = std::chrono::duration<double>(clock::now() - t0).count();
    std::cout << "whole text pass " << pass << ": " << ids.size() << " tokens, checksum "
              << checksum(ids, 0) << ", " << secs << " s, " << mb / secs << " MB/s, "
              << ids.size() / secs / 1e6 << " M tokens/s\n";
  }
  const auto docs = paragraphs(text);
  for (int pass = 0; pass < passes; ++pass) {
    t0 = clock::now();
    size_t count = 0;
    uint64_t h = 0;
    for (const auto& d : docs) {
      const auto ids = tok.encode(d, false);
      count += ids.size();
      h = checksum(ids, h);
    }
    const double secs = std::chrono::duration<double>(clock::now() - t0).count();
    std::cout << "paragraphs (" << docs.size() << ") pass " << pass << ": " << count
              << " tokens, checksum " << h << ", " << secs << " s, " << mb / secs << " MB/s, "
              << count / secs / 1e6 << " M tokens/s\n";
  }
  return 0;
} catch (const std::exception& e) {
  std::cerr << "bench_tokenize: " << e.what() << "\n";
  return 1;
}

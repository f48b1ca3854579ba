// The BPE model: characters of a word merged pair by pair in the order of the merge ranks,
// lowest rank first and leftmost first among equals, as the Hugging Face library does.
#include <mutex>
#include <queue>

#include "ft/core/error.h"
#include "ft/tokenizer/components.h"
#include "ft/tokenizer/models.h"
#include "ft/tokenizer/unicode.h"
#include "ft/tokenizer/vocab.h"

namespace ft::tokenizer {

namespace {

constexpr size_t kCacheCapacity = 200000;
constexpr size_t kCacheMaxWordBytes = 256;

class Bpe : public Model {
 public:
  explicit Bpe(const json& j) {
    for (const auto& [token, id] : j.at("vocab").items())
      vocab_.add(token, token_id(id, "BPE vocabulary id of '" + token + "'"));
    auto opt_string = [&](const char* key) {
      return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
    };
    prefix_ = opt_string("continuing_subword_prefix");
    suffix_ = opt_string("end_of_word_suffix");
    fuse_unk_ = j.value("fuse_unk", false);
    byte_fallback_ = j.value("byte_fallback", false);
    ignore_merges_ = j.value("ignore_merges", false);
    const std::string unk = opt_string("unk_token");
    if (!unk.empty()) {
      unk_id_ = vocab_.find(unk);
      FT_CHECK(unk_id_.has_value(), "tokenizer", "BPE unk_token '", unk,
               "' is not in the vocabulary");
    }
    if (j.contains("dropout") && j["dropout"].is_number())
      FT_CHECK(j["dropout"].get<double>() == 0.0, "tokenizer",
               "BPE dropout is random and not supported for encoding");
    if (byte_fallback_)
      for (int b = 0; b < 256; ++b) {
        char name[8];
        std::snprintf(name, sizeof(name), "<0x%02X>", b);
        byte_ids_[b] = vocab_.find(name).value_or(-1);
      }
    load_merges(j.at("merges"));
  }

  void tokenize(std::string_view word, std::vector<int>& ids) const override {
    if (ignore_merges_)
      if (auto id = vocab_.find(word)) {
        ids.push_back(*id);
        return;
      }
    const bool cacheable = word.size() <= kCacheMaxWordBytes;
    if (cacheable) {
      std::lock_guard lock(cache_mutex_);
      auto it = cache_.find(word);
      if (it != cache_.end()) {
        ids.insert(ids.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    const size_t first = ids.size();
    merge_word(word, ids);
    if (cacheable) {
      std::lock_guard lock(cache_mutex_);
      if (cache_.size() < kCacheCapacity)
        cache_.emplace(std::string(word), std::vector<int>(ids.begin() + first, ids.end()));
    }
  }

  std::optional<int> token_to_id(std::string_view token) const override {
    return vocab_.find(token);
  }
  const std::string* id_to_token(int id) const override { return vocab_.token(id); }
  int vocab_size() const override { return vocab_.size(); }

 private:
  static uint64_t pair_key(int a, int b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  void load_merges(const json& merges) {
    merges_.reserve(merges.size());
    int rank = 0;
    for (const auto& m : merges) {
      std::string a, b;
      if (m.is_string()) {
        // "a b": the older format, tokens without spaces.
        const std::string s = m.get<std::string>();
        const size_t space = s.find(' ');
        FT_CHECK(space != std::string::npos && s.find(' ', space + 1) == std::string::npos,
                 "tokenizer", "BPE merge '", s, "' is not two tokens");
        a = s.substr(0, space);
        b = s.substr(space + 1);
      } else {
        FT_CHECK(m.is_array() && m.size() == 2, "tokenizer", "BPE merge ", m.dump(),
                 " is not a pair");
        a = m[0].get<std::string>();
        b = m[1].get<std::string>();
      }
      const auto ia = vocab_.find(a), ib = vocab_.find(b);
      FT_CHECK(ia && ib, "tokenizer", "BPE merge '", a, " ", b,
               "' uses a token not in the vocabulary");
      const std::string merged =
          a + (b.compare(0, prefix_.size(), prefix_) == 0 ? b.substr(prefix_.size()) : b);
      const auto im = vocab_.find(merged);
      FT_CHECK(im.has_value(), "tokenizer", "BPE merge '", a, " ", b, "' makes '", merged,
               "', which is not in the vocabulary");
      merges_.emplace(pair_key(*ia, *ib), std::make_pair(rank++, *im));
    }
  }

  struct Symbol {
    int id;
    int prev, next;  // neighbours in the word, -1 at the ends
    bool alive;
  };

  void merge_word(std::string_view word, std::vector<int>& ids) const {
    thread_local std::vector<Symbol> symbols;
    symbols.clear();
    auto add = [&](int id) {
      const int n = static_cast<int>(symbols.size());
      symbols.push_back({id, n - 1, -1, true});
      if (n > 0) symbols[n - 1].next = n;
    };
    int pending_unk = -1;  // id of unknown characters not yet written (fuse_unk)
    std::string s;
    for (size_t i = 0; i < word.size();) {
      const size_t begin = i;
      const int n = utf8_valid_length(word, i);
      i += n > 0 ? n : 1;
      s.assign(word.substr(begin, i - begin));
      if (begin > 0 && !prefix_.empty()) s.insert(0, prefix_);
      if (i == word.size() && !suffix_.empty()) s += suffix_;
      if (auto id = vocab_.find(s)) {
        if (pending_unk >= 0) add(pending_unk), pending_unk = -1;
        add(*id);
        continue;
      }
      if (byte_fallback_) {
        bool all = true;
        for (unsigned char c : s) all = all && byte_ids_[c] >= 0;
        if (all) {
          for (unsigned char c : s) add(byte_ids_[c]);
          continue;
        }
      }
      if (unk_id_) {
        if (pending_unk >= 0 && !fuse_unk_) add(pending_unk);
        pending_unk = *unk_id_;
      }
    }
    if (pending_unk >= 0) add(pending_unk);

    struct Candidate {
      int rank, pos, new_id;
      bool operator>(const Candidate& o) const {
        return rank != o.rank ? rank > o.rank : pos > o.pos;
      }
    };
    thread_local std::vector<Candidate> heap_storage;
    heap_storage.clear();
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue(
        std::greater<>(), std::move(heap_storage));
    auto consider = [&](int pos) {
      const int next = symbols[pos].next;
      if (next < 0) return;
      auto it = merges_.find(pair_key(symbols[pos].id, symbols[next].id));
      if (it != merges_.end()) queue.push({it->second.first, pos, it->second.second});
    };
    for (int p = 0; p + 1 < static_cast<int>(symbols.size()); ++p) consider(p);
    while (!queue.empty()) {
      const Candidate top = queue.top();
      queue.pop();
      Symbol& left = symbols[top.pos];
      if (!left.alive || left.next < 0) continue;
      Symbol& right = symbols[left.next];
      // Stale when either side changed since the candidate was queued.
      auto it = merges_.find(pair_key(left.id, right.id));
      if (it == merges_.end() || it->second.second != top.new_id) continue;
      left.id = top.new_id;
      right.alive = false;
      left.next = right.next;
      if (right.next >= 0) symbols[right.next].prev = top.pos;
      if (left.prev >= 0) consider(left.prev);
      consider(top.pos);
    }
    for (const auto& sym : symbols)
      if (sym.alive) ids.push_back(sym.id);
  }

  Vocab vocab_;
  std::unordered_map<uint64_t, std::pair<int, int>> merges_;  // (left, right) -> (rank, merged id)
  std::string prefix_, suffix_;
  std::optional<int> unk_id_;
  bool fuse_unk_ = false, byte_fallback_ = false, ignore_merges_ = false;
  int byte_ids_[256] = {};  // id of <0xXX> per byte, -1 when absent

  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int>, StringHash, std::equal_to<>> cache_;
};

}  // namespace

std::unique_ptr<Model> make_bpe(const json& j) {
  return std::make_unique<Bpe>(j);
}

}  // namespace ft::tokenizer

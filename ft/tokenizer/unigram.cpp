// The Unigram model: the segmentation of highest total score (Viterbi over a trie of the
// pieces), unknown characters scored below every piece, as the Hugging Face library does.
#include <cstdio>

#include "ft/core/error.h"
#include "ft/tokenizer/models.h"
#include "ft/tokenizer/unicode.h"
#include "ft/tokenizer/vocab.h"

namespace ft::tokenizer {
namespace {

constexpr double kUnknownPenalty = 10.0;

class Unigram : public Model {
 public:
  explicit Unigram(const json& j) {
    const json& vocab = j.at("vocab");
    FT_CHECK(vocab.size() <= size_t{kMaxVocabSize}, "tokenizer", "Unigram vocabulary of ",
             vocab.size(), " pieces is larger than ft loads (", kMaxVocabSize, ")");
    scores_.reserve(vocab.size());
    int id = 0;
    for (const auto& entry : vocab) {
      const std::string piece = entry.at(0).get<std::string>();
      const double score = entry.at(1).get<double>();
      vocab_.add(piece, id);
      scores_.push_back(score);
      min_score_ = std::min(min_score_, score);
      insert(piece, id);
      ++id;
    }
    if (j.contains("unk_id") && j["unk_id"].is_number()) {
      unk_id_ = token_id(j["unk_id"], "Unigram unk_id");
      FT_CHECK(*unk_id_ >= 0 && *unk_id_ < id, "tokenizer", "Unigram unk_id ", *unk_id_,
               " is outside the vocabulary of ", id);
    }
    byte_fallback_ = j.value("byte_fallback", false);
    fuse_unk_ = j.value("fuse_unk", true);
  }

  void tokenize(std::string_view text, std::vector<int>& ids) const override {
    struct Node {
      double score = 0;
      int start = -1;  // where the best path's last piece starts; -1 when unreached
      int id = -1;
    };
    const size_t n = text.size();
    std::vector<Node> best(n + 1);
    best[0].start = 0;
    const double unk_score = min_score_ - kUnknownPenalty;
    for (size_t start = 0; start < n;) {
      size_t next = start;
      utf8_next(text, next);
      const size_t char_len = next - start;
      const double base = best[start].score;
      bool single_char_piece = false;
      int node = 0;
      for (size_t k = start; k < n; ++k) {
        auto it = edges_.find(edge_key(node, static_cast<unsigned char>(text[k])));
        if (it == edges_.end()) break;
        node = it->second;
        const int piece = terminal_[node];
        if (piece < 0) continue;
        Node& target = best[k + 1];
        const double candidate = base + scores_[piece];
        if (target.start < 0 || candidate > target.score) target = {candidate, int(start), piece};
        if (k + 1 - start == char_len) single_char_piece = true;
      }
      if (!single_char_piece) {
        FT_CHECK(unk_id_.has_value(), "tokenizer",
                 "Unigram meets a character outside its vocabulary and has no unk_id");
        Node& target = best[next];
        const double candidate = base + unk_score;
        if (target.start < 0 || candidate > target.score)
          target = {candidate, int(start), *unk_id_};
      }
      start = next;
    }
    // Walk back from the end; a run of unknown pieces fuses into one.
    std::vector<std::string_view> pieces;  // last first
    bool in_unknown = false;
    size_t unknown_begin = 0, unknown_end = 0;
    for (size_t end = n; end > 0;) {
      const Node& node = best[end];
      const size_t start = static_cast<size_t>(node.start);
      if (fuse_unk_ && unk_id_ && node.id == *unk_id_) {
        if (!in_unknown) unknown_end = end;
        in_unknown = true;
        unknown_begin = start;
      } else {
        if (in_unknown) pieces.push_back(text.substr(unknown_begin, unknown_end - unknown_begin));
        in_unknown = false;
        pieces.push_back(text.substr(start, end - start));
      }
      end = start;
    }
    if (in_unknown) pieces.push_back(text.substr(unknown_begin, unknown_end - unknown_begin));
    for (auto it = pieces.rbegin(); it != pieces.rend(); ++it) emit(*it, ids);
  }

  std::optional<int> token_to_id(std::string_view token) const override {
    return vocab_.find(token);
  }
  const std::string* id_to_token(int id) const override { return vocab_.token(id); }
  int vocab_size() const override { return vocab_.size(); }

 private:
  // A piece's id, its bytes as <0xXX> tokens with byte fallback, or unk.
  void emit(std::string_view piece, std::vector<int>& ids) const {
    if (auto id = vocab_.find(piece)) {
      ids.push_back(*id);
      return;
    }
    if (byte_fallback_) {
      std::vector<int> bytes;
      for (unsigned char c : piece) {
        char name[8];
        std::snprintf(name, sizeof(name), "<0x%02X>", c);
        auto id = vocab_.find(name);
        if (!id) break;
        bytes.push_back(*id);
      }
      if (bytes.size() == piece.size()) {
        ids.insert(ids.end(), bytes.begin(), bytes.end());
        return;
      }
    }
    FT_CHECK(unk_id_.has_value(), "tokenizer", "Unigram has no unk_id for '", piece, "'");
    ids.push_back(*unk_id_);
  }

  static uint64_t edge_key(int node, unsigned char byte) {
    return (static_cast<uint64_t>(node) << 8) | byte;
  }

  void insert(const std::string& piece, int id) {
    if (terminal_.empty()) terminal_.push_back(-1);
    int node = 0;
    for (unsigned char c : piece) {
      auto [it, fresh] = edges_.emplace(edge_key(node, c), static_cast<int>(terminal_.size()));
      if (fresh) terminal_.push_back(-1);
      node = it->second;
    }
    terminal_[node] = id;
  }

  Vocab vocab_;
  std::vector<double> scores_;  // by id
  double min_score_ = 0;
  std::optional<int> unk_id_;
  bool byte_fallback_ = false, fuse_unk_ = true;
  std::unordered_map<uint64_t, int> edges_;  // (node, byte) -> child node of the piece trie
  std::vector<int> terminal_;                // piece id ending at each node, -1 for none
};

}  // namespace

std::unique_ptr<Model> make_unigram(const json& j) {
  return std::make_unique<Unigram>(j);
}

}  // namespace ft::tokenizer

// Post-processors: TemplateProcessing, RobertaProcessing, BertProcessing, ByteLevel (ids
// unchanged), Sequence; single sequences only.
#include "ft/core/error.h"
#include "ft/tokenizer/components.h"

namespace ft::tokenizer {
namespace {

// The ids before and after the sequence, whatever the source of the rule.
class AroundProcessor : public PostProcessor {
 public:
  AroundProcessor(std::vector<int> before, std::vector<int> after)
      : before_(std::move(before)), after_(std::move(after)) {}
  void process(std::vector<int>& ids, bool add_special_tokens) const override {
    if (!add_special_tokens) return;
    ids.insert(ids.begin(), before_.begin(), before_.end());
    ids.insert(ids.end(), after_.begin(), after_.end());
  }

 private:
  std::vector<int> before_, after_;
};

std::unique_ptr<PostProcessor> make_template(const json& j) {
  const json& specials = j.at("special_tokens");
  std::vector<int> before, after;
  bool seen_sequence = false;
  for (const auto& item : j.at("single")) {
    if (item.contains("Sequence")) {
      FT_CHECK(!seen_sequence, "tokenizer", "TemplateProcessing 'single' has two sequences");
      seen_sequence = true;
      continue;
    }
    FT_CHECK(item.contains("SpecialToken"), "tokenizer",
             "TemplateProcessing has an unknown piece: ", item.dump());
    const std::string name = item["SpecialToken"].at("id").get<std::string>();
    FT_CHECK(specials.contains(name), "tokenizer", "TemplateProcessing uses special token '", name,
             "' that it does not define");
    for (const json& id : specials[name].at("ids"))
      (seen_sequence ? after : before).push_back(token_id(id, "TemplateProcessing id of " + name));
  }
  FT_CHECK(seen_sequence, "tokenizer", "TemplateProcessing 'single' has no sequence");
  return std::make_unique<AroundProcessor>(std::move(before), std::move(after));
}

class IdentityProcessor : public PostProcessor {
 public:
  void process(std::vector<int>&, bool) const override {}
};

class SequenceProcessor : public PostProcessor {
 public:
  explicit SequenceProcessor(std::vector<std::unique_ptr<PostProcessor>> parts)
      : parts_(std::move(parts)) {}
  void process(std::vector<int>& ids, bool add_special_tokens) const override {
    for (const auto& p : parts_) p->process(ids, add_special_tokens);
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> parts_;
};

}  // namespace

std::unique_ptr<PostProcessor> make_post_processor(const json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = json_type(j, "post-processor");
  if (type == "TemplateProcessing") return make_template(j);
  if (type == "ByteLevel") return std::make_unique<IdentityProcessor>();
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    // ["<s>", 0]: the token and its id.
    const int cls = token_id(j.at("cls").at(1), type + " cls id");
    const int sep = token_id(j.at("sep").at(1), type + " sep id");
    return std::make_unique<AroundProcessor>(std::vector<int>{cls}, std::vector<int>{sep});
  }
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PostProcessor>> parts;
    for (const auto& p : sequence_parts(j, "processors", "post-processor"))
      parts.push_back(make_post_processor(p));
    return std::make_unique<SequenceProcessor>(std::move(parts));
  }
  unsupported("post-processor", type);
}

std::unique_ptr<PostProcessor> make_bos_eos_processor(std::optional<int> bos,
                                                      std::optional<int> eos) {
  std::vector<int> before, after;
  if (bos) before.push_back(*bos);
  if (eos) after.push_back(*eos);
  return std::make_unique<AroundProcessor>(std::move(before), std::move(after));
}

}  // namespace ft::tokenizer

// ft tokenize: the ids and token strings of a text under a tokenizer, for inspection and
// scripts. TEXT "-" reads standard input (all of it, bytes as they are).
#include <iostream>
#include <iterator>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "apps/ft/commands.h"
#include "ft/tokenizer/tokenizer.h"

namespace ft::cli {
namespace {

struct TokenizeOptions {
  std::string tokenizer_dir;
  std::string text;
  bool no_special = false;
  bool as_json = false;
};

void run_tokenize(const TokenizeOptions& o) {
  std::string text = o.text;
  if (text == "-") text.assign(std::istreambuf_iterator<char>(std::cin), {});
  const auto tok = tokenizer::Tokenizer::from_dir(o.tokenizer_dir);
  const auto enc = tok.encode_with_pieces(text, !o.no_special);
  const auto replace = nlohmann::json::error_handler_t::replace;
  if (o.as_json) {
    nlohmann::json out;
    out["ids"] = enc.ids;
    out["pieces"] = enc.pieces;
    std::cout << out.dump(-1, ' ', false, replace) << "\n";
    return;
  }
  // One token a line: the id, a tab, the token string quoted as JSON so that spaces and
  // control characters stay visible.
  for (size_t i = 0; i < enc.ids.size(); ++i)
    std::cout << enc.ids[i] << "\t" << nlohmann::json(enc.pieces[i]).dump(-1, ' ', false, replace)
              << "\n";
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenize", "Print the token ids and pieces of a text");
  auto o = std::make_shared<TokenizeOptions>();
  cmd->add_option("--tokenizer", o->tokenizer_dir,
                  "Folder with tokenizer.json (or .json.gz) and tokenizer_config.json")
      ->required();
  cmd->add_flag("--no-special", o->no_special, "Do not add BOS/EOS or other template tokens");
  cmd->add_flag("--json", o->as_json, "Print one JSON object {\"ids\": [...], \"pieces\": [...]}");
  cmd->add_option("text", o->text, "The text, or - to read standard input")->required();
  cmd->callback([o] { run_tokenize(*o); });
}

}  // namespace ft::cli

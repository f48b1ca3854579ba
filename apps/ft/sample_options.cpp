#include "apps/ft/sample_options.h"

#include "ft/core/error.h"
#include "ft/io/adapters.h"  // defines: io::adapter_chat_template
#include "ft/template/named_templates.h"

namespace ft::cli {

void add_sample_options(CLI::App* cmd, SampleCliOptions& o, const std::string& mask_prompt_help) {
  cmd->add_option("--format", o.format,
                  "Record format: auto (detected per file), text, completions, chat, alpaca or "
                  "sharegpt")
      ->check(CLI::IsMember({"auto", "text", "completions", "chat", "alpaca", "sharegpt"}))
      ->capture_default_str();
  cmd->add_flag("--mask-prompt", o.mask_prompt, mask_prompt_help);
  cmd->add_flag("--skip-bad-records", o.skip_bad_records,
                "Count and report bad records instead of stopping at the first");
  cmd->add_flag("--no-template", o.no_template,
                "Concatenate conversation turns instead of rendering the chat template");
  std::string names;
  for (const std::string& n : chat::named_template_names())
    names += (names.empty() ? "" : ", ") + n;
  cmd->add_option("--template", o.chat_template,
                  "Chat template: a name (" + names +
                      ") or a .jinja file, in place of the tokenizer's (default: an adapter's "
                      "own, else the tokenizer's)");
}

data::DataOptions sample_data_options(const SampleCliOptions& o, int max_seq_length,
                                      const std::string& adapter) {
  FT_CHECK(o.chat_template.empty() || !o.no_template, "data",
           "--template and --no-template exclude each other");
  data::DataOptions d;
  d.format = data::parse_format(o.format);
  d.skip_bad_records = o.skip_bad_records;
  d.sample.use_template = !o.no_template;
  d.sample.mask_prompt = o.mask_prompt;
  d.sample.max_seq_length = max_seq_length;
  d.chat_template = o.chat_template;
  if (const auto saved = io::adapter_chat_template(adapter); saved && d.chat_template.empty())
    d.chat_template = saved->string();
  return d;
}

}  // namespace ft::cli

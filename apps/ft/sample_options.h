// The options that choose how records become samples, defined once for ft train, ft data
// and ft eval: --format, --mask-prompt, --skip-bad-records, --no-template, --template.
#pragma once

#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "ft/data/dataset.h"

namespace ft::cli {

struct SampleCliOptions {
  std::string format = "auto";  // data::parse_format's names
  bool mask_prompt = false;
  bool skip_bad_records = false;
  bool no_template = false;
  std::string chat_template;  // --template: a named template or a .jinja file
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(SampleCliOptions, format, mask_prompt,
                                                skip_bad_records, no_template, chat_template)

// Defines the five options on cmd; mask_prompt_help says what --mask-prompt does there.
void add_sample_options(CLI::App* cmd, SampleCliOptions& o, const std::string& mask_prompt_help);

// The loader's options for them, samples cut at max_seq_length (0: not cut). The template
// is --template's, else the one the adapter (a folder, or empty) was trained with, else
// the tokenizer's. Throws ft::Error for --template with --no-template.
data::DataOptions sample_data_options(const SampleCliOptions& o, int max_seq_length,
                                      const std::string& adapter = "");

}  // namespace ft::cli

// `--template` and `--profile` as a user meets them: the template renders the data, goes
// with the adapter and is what eval and fuse use next; a profile's values yield to explicit
// options; unknown names are one error line listing the known ones.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>

#include "ft/io/adapters.h"
#include "ft/template/named_templates.h"
#include "tests/cli_train/cli_train_util.h"

using namespace ft::testing::cli_train;

namespace {

std::string read_text(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(CliTemplates, ANamedTemplateRendersTheDataAndGoesWithTheAdapter) {
  const fs::path data = small_data(16);
  // ft data shows the sample as the template renders it.
  Result shown = run("data --no-cache --json --tokenizer " + tiny_model().string() + " --data " +
                     data.string() + " --template chatml");
  ASSERT_EQ(shown.status, 0) << shown.out;
  const std::string text = nlohmann::json::parse(shown.out)["sample"]["text"];
  // [[...]] marks the trained tokens: all but the first, without --mask-prompt.
  EXPECT_EQ(text, "<|im_start|>[[user\n22+13<|im_end|>\n<|im_start|>assistant\n35<|im_end|>\n]]");

  const fs::path out = temp("templated");
  Result r = run("train start " + tiny_model().string() + " " + data.string() +
                 " --template zephyr --iterations 2 --batch-size 4 --output-dir " + out.string());
  ASSERT_EQ(r.status, 0) << r.out;
  const fs::path saved = out / "adapter" / ft::io::kChatTemplateFile;
  ASSERT_TRUE(fs::exists(saved));
  EXPECT_EQ(read_text(saved), *ft::chat::named_template_source("zephyr"));

  // eval reads the adapter's template: the same loss as naming it, another than without.
  const std::string adapter = " --adapter " + (out / "adapter").string();
  const double with_saved = eval_loss(tiny_model(), data, adapter);
  EXPECT_EQ(with_saved, eval_loss(tiny_model(), data, adapter + " --template zephyr"));
  EXPECT_NE(with_saved, eval_loss(tiny_model(), data, adapter + " --template chatml"));

  // A fused model keeps it as its own chat_template.jinja.
  const fs::path fused = temp("templated_fused");
  Result f = run("fuse " + tiny_model().string() + adapter + " --out " + fused.string());
  ASSERT_EQ(f.status, 0) << f.out;
  EXPECT_EQ(read_text(fused / "chat_template.jinja"), read_text(saved));
}

TEST(CliTemplates, ProfilesSetWhatTheCommandLineAndYamlLeaveUnset) {
  const fs::path data = small_data(16);
  const fs::path out = temp("profiled");
  Result r = run("train start " + tiny_model().string() + " " + data.string() +
                 " --profile chat --max-seq-length 64 --iterations 1 --batch-size 2 "
                 "--output-dir " +
                 out.string());
  ASSERT_EQ(r.status, 0) << r.out;
  ft::io::Adapter a = ft::io::load_adapter(out / "adapter");
  EXPECT_EQ(a.config.rank, 16);
  EXPECT_EQ(a.config.alpha, 32.0f);
  // all-linear: the 7 projections of each of the tiny model's 2 layers.
  EXPECT_EQ(a.modules.size(), 14u);
  for (const auto& m : a.modules) EXPECT_EQ(m.find("lm_head"), std::string::npos) << m;

  // An explicit option wins over the profile, from the command line and from YAML.
  fs::remove_all(out);
  const fs::path yaml = temp("profile.yaml");
  std::ofstream(yaml) << "profile: code\nlora_alpha: 8\n";
  Result explicit_rank = run("train start " + tiny_model().string() + " " + data.string() +
                             " --config " + yaml.string() +
                             " --lora-rank 4 --target-modules q_proj --max-seq-length 64 "
                             "--iterations 1 --batch-size 2 --output-dir " +
                             out.string());
  ASSERT_EQ(explicit_rank.status, 0) << explicit_rank.out;
  a = ft::io::load_adapter(out / "adapter");
  EXPECT_EQ(a.config.rank, 4);
  EXPECT_EQ(a.config.alpha, 8.0f);
  EXPECT_EQ(a.modules.size(), 2u);
}

TEST(CliTemplates, UnknownNamesAreOneErrorLineListingTheKnownOnes) {
  const fs::path data = small_data(4);
  const fs::path out = temp("unknown_names");
  Result profile = run("train start " + tiny_model().string() + " " + data.string() +
                       " --profile chatty --output-dir " + out.string());
  EXPECT_NE(profile.status, 0);
  EXPECT_TRUE(one_error_line(profile.out)) << profile.out;
  EXPECT_NE(profile.out.find("unknown profile 'chatty' (known: chat, instruct, completion, code)"),
            std::string::npos)
      << profile.out;

  Result tmpl = run("train start " + tiny_model().string() + " " + data.string() +
                    " --template chatm --output-dir " + out.string());
  EXPECT_EQ(tmpl.status, 1);
  EXPECT_TRUE(one_error_line(tmpl.out)) << tmpl.out;
  EXPECT_NE(tmpl.out.find("unknown template 'chatm' (known: chatml, llama2,"), std::string::npos)
      << tmpl.out;
  EXPECT_FALSE(fs::exists(out));
}

}  // namespace

namespace {

// A Hugging Face cache holding a tiny GPT-2 as microsoft/DialoGPT-small (ft init's, with
// its byte-level tokenizer and no chat template, as DialoGPT has none), and a folder laid
// out as the repository is, for the README's relative paths.
struct SpecificationWorld {
  fs::path root = temp("specification");
  fs::path cache = root / "hub";
  fs::path work = root / "work";
  SpecificationWorld() {
    const std::string commit(40, 'a');
    const fs::path repo = cache / "models--microsoft--DialoGPT-small";
    Result init = run("init --arch gpt2 --size tiny --seed 3 --out " +
                      (repo / "snapshots" / commit).string());
    EXPECT_EQ(init.status, 0) << init.out;
    fs::create_directories(repo / "refs");
    std::ofstream(repo / "refs" / "main") << commit;
    fs::create_directories(work / "data");
    fs::create_directories(work / "configs");
    fs::create_directories(work / "examples");
    fs::copy_file(FT_SOURCE_DIR "/examples/sample_dataset.json", work / "data" / "training.json");
    fs::copy_file(FT_SOURCE_DIR "/examples/sample_dataset.json",
                  work / "examples" / "sample_dataset.json");
    fs::copy_file(FT_SOURCE_DIR "/configs/production.yml", work / "configs" / "production.yml");
  }
  // ft ARGS run in work/ with the cache, offline.
  Result ft(const std::string& args) const {
    return ft::testing::run_ft("cd " + work.string() + " && HF_HUB_OFFLINE=1 HF_HUB_CACHE=" +
                                   cache.string() + " " + FT_BINARY + " " + args,
                               "", true);
  }
};

// The commands of ft's specification, exactly as the README shows them.
TEST(CliTemplates, TheSpecificationsCommandsRunAsWritten) {
  const SpecificationWorld world;
  Result start = world.ft(
      "train start microsoft/DialoGPT-small data/training.json --template chatml --epochs 5 "
      "--batch-size 4 --lora-rank 16 --profile chat");
  ASSERT_EQ(start.status, 0) << start.out;
  const fs::path adapter = world.work / "ft-output" / "adapter";
  EXPECT_EQ(ft::io::load_adapter(adapter).config.rank, 16);
  EXPECT_TRUE(fs::exists(adapter / ft::io::kChatTemplateFile));

  Result validate = world.ft("train validate configs/production.yml");
  ASSERT_EQ(validate.status, 0) << validate.out;
  EXPECT_NE(validate.out.find("train: examples/sample_dataset.json: 78 records"), std::string::npos)
      << validate.out;
  EXPECT_NE(validate.out.find("valid: examples/sample_dataset.json: 9 records"), std::string::npos)
      << validate.out;

  fs::remove_all(world.work / "ft-output");
  Result quick = world.ft("train quick microsoft/DialoGPT-small examples/sample_dataset.json");
  ASSERT_EQ(quick.status, 0) << quick.out;
  EXPECT_TRUE(fs::exists(world.work / "ft-output" / "adapter" / "adapter_config.json"));
}

}  // namespace

// ft init, train, validate and eval as a script sees them: folders written, losses,
// adapters, the YAML config against the command line, errors and resuming.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include <mlx/ops.h>

#include "ft/io/adapters.h"
#include "ft/io/model_folder.h"
#include "ft/models/registry.h"
#include "ft/tokenizer/tokenizer.h"
#include "tests/cli_train/cli_train_util.h"

using namespace ft::testing::cli_train;

TEST(CliTrain, InitWritesALoadableFolderWithATokenizer) {
  for (std::string arch :
       {"llama", "qwen2", "qwen3", "mistral"}) {  // the others: families_test.cpp
    fs::path dir = temp("init_" + arch);
    Result r = run("init --arch " + arch + " --out " + dir.string());
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_EQ(ft::io::read_config(dir).get_string("model_type"), arch);
    auto model = ft::models::load_model(dir);
    // Hand count for tiny (hidden 64, 2 layers, 4 heads of 16, 2 KV heads, MLP 176,
    // vocab 256 bytes + 3 specials, tied): embedding 259*64; per layer q,o 64*64,
    // k,v 32*64, gate/up/down 176*64, two norms of 64; final norm 64.
    size_t layer = 2 * 64 * 64 + 2 * 32 * 64 + 3 * 176 * 64 + 2 * 64;
    if (arch == "qwen2") layer += 64 + 32 + 32;  // q/k/v bias
    if (arch == "qwen3") layer += 16 + 16;       // q/k norms over head_dim
    EXPECT_EQ(model->num_parameters(), 259 * 64 + 2 * layer + 64) << arch;
    auto logits = (*model)(mlx::core::array({1, 2, 3}, {1, 3}, mlx::core::int32));
    EXPECT_EQ(logits.shape(), (mlx::core::Shape{1, 3, 259}));
  }
  auto tok = ft::tokenizer::Tokenizer::from_dir(tiny_model());
  std::string text = "12+34=46 h\xc3\xa9llo\n\tworld <|im_end|>";
  auto ids = tok.encode(text);
  EXPECT_EQ(tok.decode(ids), text);
  // Bytes are their own ids; the special token is one id.
  EXPECT_EQ(ids[0], '1');
  EXPECT_EQ(ids.back(), 258);
  EXPECT_EQ(tok.eos_token()->content, "<|im_end|>");
}

TEST(CliTrain, TrainingLowersTheLossAndWritesTheAdapter) {
  fs::path data = small_data(64);
  fs::path out = temp("lowers");
  auto before = run("eval " + tiny_model().string() + " " + data.string() + " --json");
  ASSERT_EQ(before.status, 0) << before.out;
  Result r =
      run("train " + tiny_model().string() + " " + data.string() +
          " --iterations 25 --lr 1e-2 --batch-size 8 --lora-rank 4 --output-dir " + out.string());
  ASSERT_EQ(r.status, 0) << r.out;
  // PEFT's layout, read back by ft's adapter reader.
  ASSERT_TRUE(fs::exists(out / "adapter/adapter_model.safetensors")) << r.out;
  auto config = nlohmann::json::parse(std::ifstream(out / "adapter/adapter_config.json"));
  EXPECT_EQ(config["peft_type"], "LORA");
  EXPECT_EQ(config["r"], 4);
  auto adapter = ft::io::load_adapter(out / "adapter");
  EXPECT_EQ(adapter.config.rank, 4);
  // q/k/v/o of 2 layers, A and B each.
  EXPECT_EQ(adapter.weights.size(), 16u);
  EXPECT_EQ(adapter.weights.at("model.layers.0.self_attn.k_proj.lora_B").shape(),
            (mlx::core::Shape{32, 4}));
  auto after = run("eval " + tiny_model().string() + " " + data.string() + " --json --adapter " +
                   (out / "adapter").string());
  ASSERT_EQ(after.status, 0) << after.out;
  double loss_before = nlohmann::json::parse(before.out)["loss"].get<double>();
  double loss_after = nlohmann::json::parse(after.out)["loss"].get<double>();
  EXPECT_LT(loss_after, loss_before - 0.5) << r.out;
  EXPECT_EQ(metric_losses(out / "metrics.jsonl").size(), 25u);
}

TEST(CliTrain, CommandLineBeatsYaml) {
  fs::path data = small_data(32);
  fs::path out = temp("yaml");
  fs::path yaml = temp("config.yaml");
  std::ofstream(yaml) << "model: " << tiny_model().string() << "\ndata: " << data.string()
                      << "\nlora_rank: 4\niterations: 3\nbatch-size: 4\n"
                      << "target_modules: [q_proj, v_proj]\noutput_dir: " << out.string() << "\n";
  Result r = run("train --config " + yaml.string() + " --lora-rank 2");
  ASSERT_EQ(r.status, 0) << r.out;
  auto adapter = ft::io::load_adapter(out / "adapter");
  EXPECT_EQ(adapter.config.rank, 2);      // the command line
  EXPECT_EQ(adapter.modules.size(), 4u);  // the YAML list: q, v of 2 layers
  for (const auto& m : adapter.modules)
    EXPECT_TRUE(m.ends_with("q_proj") || m.ends_with("v_proj")) << m;
  EXPECT_EQ(metric_losses(out / "metrics.jsonl").size(), 3u);  // YAML iterations
  EXPECT_EQ(adapter.weights.at("model.layers.1.self_attn.v_proj.lora_A").shape(),
            (mlx::core::Shape{2, 64}));
  // validate reads the same config and trains nothing.
  fs::remove_all(out);
  Result v = run("validate " + yaml.string());
  ASSERT_EQ(v.status, 0) << v.out;
  EXPECT_NE(v.out.find("32 records"), std::string::npos) << v.out;
  EXPECT_NE(v.out.find("steps: 3"), std::string::npos) << v.out;
  EXPECT_FALSE(fs::exists(out));
  // The specification's spellings: ft train validate CONFIG and ft train start CONFIG.
  Result tv = run("train validate " + yaml.string());
  ASSERT_EQ(tv.status, 0) << tv.out;
  EXPECT_EQ(tv.out, v.out);
  EXPECT_FALSE(fs::exists(out));
  Result start = run("train start " + yaml.string() + " --lora-rank 2");
  ASSERT_EQ(start.status, 0) << start.out;
  EXPECT_EQ(ft::io::load_adapter(out / "adapter").config.rank, 2);
  EXPECT_EQ(metric_losses(out / "metrics.jsonl").size(), 3u);
}

TEST(CliTrain, BadYamlKeysAndValuesAreOneErrorLine) {
  fs::path data = small_data(8);
  fs::path yaml = temp("bad.yaml");
  std::ofstream(yaml) << "model: " << tiny_model().string() << "\ndata: " << data.string()
                      << "\nlora_rnak: 4\n";
  Result key = run("validate --config " + yaml.string());
  EXPECT_EQ(key.status, 2);
  EXPECT_TRUE(one_error_line(key.out)) << key.out;
  EXPECT_NE(key.out.find("lora_rnak"), std::string::npos) << key.out;

  std::ofstream(yaml) << "model: " << tiny_model().string() << "\nlora_rank: -3\n";
  Result value = run("train --config " + yaml.string());
  EXPECT_EQ(value.status, 2);
  EXPECT_TRUE(one_error_line(value.out)) << value.out;
  EXPECT_NE(value.out.find("lora_rank"), std::string::npos) << value.out;

  std::ofstream(yaml) << "model: [unclosed\n";
  Result syntax = run("train --config " + yaml.string());
  EXPECT_EQ(syntax.status, 1);
  EXPECT_TRUE(one_error_line(syntax.out)) << syntax.out;
}

TEST(CliTrain, NonexistentPathsAreOneErrorLine) {
  // Refused runs leave no output folder behind.
  fs::path out = temp("refused_run");
  Result model =
      run("train /nonexistent/model " + kAddition + "/train.jsonl --output-dir " + out.string());
  EXPECT_EQ(model.status, 1);
  EXPECT_TRUE(one_error_line(model.out)) << model.out;
  EXPECT_NE(model.out.find("/nonexistent/model"), std::string::npos);
  Result train_data = run("train " + tiny_model().string() +
                          " /nonexistent/data.jsonl --output-dir " + out.string());
  EXPECT_EQ(train_data.status, 1);
  EXPECT_TRUE(one_error_line(train_data.out)) << train_data.out;
  EXPECT_FALSE(fs::exists(out));
  // An output folder that cannot be made: a path under a regular file.
  Result unwritable =
      run("train " + tiny_model().string() + " " + kAddition + "/train.jsonl --output-dir " +
          (tiny_model() / "config.json" / "run").string());
  EXPECT_EQ(unwritable.status, 1);
  EXPECT_TRUE(one_error_line(unwritable.out)) << unwritable.out;
  EXPECT_NE(unwritable.out.find("cannot write the output folder"), std::string::npos)
      << unwritable.out;
  Result data = run("eval " + tiny_model().string() + " /nonexistent/data.jsonl");
  EXPECT_EQ(data.status, 1);
  EXPECT_TRUE(one_error_line(data.out)) << data.out;
  Result adapter = run("eval " + tiny_model().string() + " " + kAddition +
                       "/test.jsonl --adapter /nonexistent/adapter");
  EXPECT_EQ(adapter.status, 1);
  EXPECT_TRUE(one_error_line(adapter.out)) << adapter.out;
}

TEST(CliTrain, EvalJsonCountsThePredictedTokens) {
  fs::path data = temp("eval.jsonl");
  std::ofstream(data) << R"({"messages":[{"role":"user","content":"12+34"},)"
                      << R"({"role":"assistant","content":"46"}]})"
                      << "\n"
                      << R"({"messages":[{"role":"user","content":"99+1"},)"
                      << R"({"role":"assistant","content":"100"}]})"
                      << "\n";
  Result r = run("eval " + tiny_model().string() + " " + data.string() + " --json");
  ASSERT_EQ(r.status, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  // ChatML by hand: each record predicts every token after its first.
  auto tok = ft::tokenizer::Tokenizer::from_dir(tiny_model());
  auto chatml = [&](const std::string& user, const std::string& assistant) {
    return tok.encode("<|im_start|>user\n" + user + "<|im_end|>\n<|im_start|>assistant\n" +
                      assistant + "<|im_end|>\n")
               .size() -
           1;
  };
  EXPECT_EQ(j["tokens"].get<size_t>(), chatml("12+34", "46") + chatml("99+1", "100"));
  EXPECT_EQ(j["records"], 2);
  EXPECT_NEAR(j["perplexity"].get<double>(), std::exp(j["loss"].get<double>()), 1e-6);
  // A random model over 259 tokens: the loss is near log(259).
  EXPECT_NEAR(j["loss"].get<double>(), std::log(259.0), 0.5);
  EXPECT_GE(j["accuracy"].get<double>(), 0.0);
  EXPECT_LE(j["accuracy"].get<double>(), 1.0);
}

TEST(CliTrain, AnInterruptedRunResumesWithTheSameLosses) {
  fs::path data = small_data(48);
  std::string common = "train " + tiny_model().string() + " " + data.string() +
                       " --iterations 6 --batch-size 4 --lr 5e-3 --lora-dropout 0.1 --seed 3";
  fs::path straight = temp("straight");
  Result a = run(common + " --output-dir " + straight.string());
  ASSERT_EQ(a.status, 0) << a.out;

  fs::path resumed = temp("resumed");
  Result first = run(common + " --stop-after 2 --output-dir " + resumed.string());
  ASSERT_EQ(first.status, 0) << first.out;
  EXPECT_FALSE(fs::exists(resumed / "adapter")) << first.out;
  Result second = run(common + " --output-dir " + resumed.string());
  ASSERT_EQ(second.status, 0) << second.out;
  EXPECT_NE(second.out.find("resumed from step 2"), std::string::npos) << second.out;

  auto expected = metric_losses(straight / "metrics.jsonl");
  auto got = metric_losses(resumed / "metrics.jsonl");
  ASSERT_EQ(expected.size(), 6u);
  EXPECT_EQ(got, expected);  // bit for bit on CPU
  auto wa = ft::io::load_weights(straight / "adapter/adapter_model.safetensors");
  auto wb = ft::io::load_weights(resumed / "adapter/adapter_model.safetensors");
  for (const auto& [name, value] : wa) {
    EXPECT_TRUE(mlx::core::array_equal(value, wb.at(name)).item<bool>()) << name;
  }
}

TEST(CliTrain, QuickRunsOneEpochOfLoraOnQkvo) {
  fs::path data = small_data(64);
  fs::path out = temp("quick");
  Result r = run("train quick " + tiny_model().string() + " " + data.string() + " --output-dir " +
                 out.string());
  ASSERT_EQ(r.status, 0) << r.out;
  // 64 records in rows of 4: one epoch is 16 steps, under the cap of 200.
  EXPECT_EQ(metric_losses(out / "metrics.jsonl").size(), 16u);
  auto adapter = ft::io::load_adapter(out / "adapter");
  EXPECT_EQ(adapter.config.rank, 8);
  EXPECT_EQ(adapter.modules.size(), 8u);  // q, k, v, o of 2 layers
}

TEST(CliTrain, CtrlCSavesACheckpointThatTheNextRunResumes) {
  fs::path out = temp("sigint");
  fs::create_directories(out);
  std::string train = std::string(FT_BINARY) + " train " + tiny_model().string() + " " + kAddition +
                      "/train.jsonl --iterations 100000 --batch-size 4 --output-dir " +
                      out.string();
  // SIGINT once the first step is in metrics.jsonl (the handler is installed by then).
  std::string script = train + " > " + (out / "log.txt").string() +
                       " 2>&1 & p=$!; for i in $(seq 600); do [ -s " +
                       (out / "metrics.jsonl").string() +
                       " ] && break; sleep 0.1; done; kill -INT $p; wait $p; echo rc=$?";
  auto r = ft::testing::run_ft(script, "", /*raw=*/true);
  EXPECT_NE(r.out.find("rc=130"), std::string::npos) << r.out;
  std::ifstream log(out / "log.txt");
  std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("interrupted at step"), std::string::npos) << text;
  size_t steps = metric_losses(out / "metrics.jsonl").size();
  ASSERT_GT(steps, 0u);
  Result again = run("train " + tiny_model().string() + " " + kAddition +
                     "/train.jsonl --iterations 100000 --batch-size 4 --stop-after 1 " +
                     "--output-dir " + out.string());
  ASSERT_EQ(again.status, 0) << again.out;
  EXPECT_NE(again.out.find("resumed from step " + std::to_string(steps)), std::string::npos)
      << again.out;
  EXPECT_EQ(metric_losses(out / "metrics.jsonl").size(), steps + 1);
}

TEST(CliTrain, MlxLmAdapterLayoutHoldsTheSameAdapterAsPeft) {
  fs::path data = small_data(32);
  std::string args =
      " --iterations 4 --lr 1e-2 --lora-rank 4 --num-layers 1 --target-modules "
      "q_proj v_proj --output-dir ";
  fs::path peft = temp("format_peft"), mlx = temp("format_mlx");
  Result a = run("train " + tiny_model().string() + " " + data.string() + args + peft.string());
  Result b = run("train " + tiny_model().string() + " " + data.string() + args + mlx.string() +
                 " --adapter-format mlx-lm");
  ASSERT_EQ(a.status, 0) << a.out;
  ASSERT_EQ(b.status, 0) << b.out;
  ASSERT_TRUE(fs::exists(mlx / "adapter/adapters.safetensors")) << b.out;
  auto config = nlohmann::json::parse(std::ifstream(mlx / "adapter/adapter_config.json"));
  EXPECT_EQ(config["fine_tune_type"], "lora");
  EXPECT_EQ(config["num_layers"], 1);
  EXPECT_EQ(config["lora_parameters"]["rank"], 4);
  // Same seed, same run: both layouts read back as the same adapter and the same loss.
  auto pa = ft::io::load_adapter(peft / "adapter");
  auto ma = ft::io::load_adapter(mlx / "adapter");
  EXPECT_EQ(pa.modules, ma.modules);
  EXPECT_EQ(ma.modules.size(), 2u);  // q and v of the last layer
  for (const auto& [name, value] : pa.weights)
    EXPECT_TRUE(mlx::core::array_equal(value, ma.weights.at(name)).item<bool>()) << name;
  std::string eval = "eval " + tiny_model().string() + " " + data.string() + " --json --adapter ";
  Result ea = run(eval + (peft / "adapter").string());
  Result eb = run(eval + (mlx / "adapter").string());
  ASSERT_EQ(ea.status, 0) << ea.out;
  EXPECT_EQ(nlohmann::json::parse(ea.out)["loss"], nlohmann::json::parse(eb.out)["loss"]);

  Result bad = run("train " + tiny_model().string() + " " + data.string() +
                   " --adapter-format mlx-lm --target-regex 'q_proj' --output-dir " +
                   temp("format_bad").string());
  EXPECT_EQ(bad.status, 1);
  EXPECT_TRUE(one_error_line(bad.out)) << bad.out;
}

TEST(CliTrain, InfoCountsTheParametersOfTheFolderAndWhatTrainingTrains) {
  auto model = ft::models::load_model(tiny_model());
  Result full = run("info " + tiny_model().string() + " --json --method full");
  ASSERT_EQ(full.status, 0) << full.out;
  auto j = nlohmann::json::parse(full.out);
  EXPECT_EQ(j["parameters"].get<size_t>(), model->num_parameters());
  EXPECT_EQ(j["trainable_parameters"].get<size_t>(), model->num_parameters());
  EXPECT_EQ(j["layers"], model->config().num_hidden_layers);

  ft::nn::LoraConfig lora;
  lora.rank = 4;
  lora.target_modules = {"q_proj", "down_proj"};
  ft::nn::apply_lora(*model, lora);
  Result r = run("info " + tiny_model().string() +
                 " --json --lora-rank 4 --target-modules q_proj down_proj --batch-size 2 "
                 "--max-seq-length 64");
  ASSERT_EQ(r.status, 0) << r.out;
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["trainable_parameters"].get<size_t>(), model->num_trainable_parameters());
  const auto& m = j["memory"];
  uint64_t weight_bytes = 0;
  for (const auto& [name, p] : model->parameters()) weight_bytes += p.nbytes();
  EXPECT_EQ(m["weights"].get<uint64_t>(), weight_bytes);
  EXPECT_EQ(m["optimizer_state"].get<uint64_t>(), 2 * 4 * model->num_trainable_parameters());
  EXPECT_EQ(m["total"].get<uint64_t>(),
            m["weights"].get<uint64_t>() + m["gradients"].get<uint64_t>() +
                m["master_weights"].get<uint64_t>() + m["optimizer_state"].get<uint64_t>() +
                m["activations"].get<uint64_t>() + m["head"].get<uint64_t>());
  // Activations grow with the tokens of a batch.
  Result longer =
      run("info " + tiny_model().string() + " --json --batch-size 2 --max-seq-length 128");
  EXPECT_GT(nlohmann::json::parse(longer.out)["memory"]["activations"].get<uint64_t>(),
            m["activations"].get<uint64_t>());

  // QLoRA's 4-bit base: packed weights with their scales and biases, far below f32.
  Result q4 = run("info " + tiny_model().string() + " --json --quantize-bits 4");
  ASSERT_EQ(q4.status, 0) << q4.out;
  EXPECT_LT(nlohmann::json::parse(q4.out)["memory"]["weights"].get<uint64_t>(), weight_bytes / 2);

  Result missing = run("info /nonexistent/model");
  EXPECT_EQ(missing.status, 1);
  EXPECT_TRUE(one_error_line(missing.out)) << missing.out;
}

TEST(CliTrain, TrainingContinuesFromASavedAdapter) {
  fs::path data = small_data(48);
  fs::path first = temp("continue_first"), second = temp("continue_second");
  std::string common = "train " + tiny_model().string() + " " + data.string() +
                       " --batch-size 8 --lora-rank 4 --target-modules q_proj v_proj";
  Result a = run(common + " --iterations 25 --lr 2e-2 --output-dir " + first.string());
  ASSERT_EQ(a.status, 0) << a.out;
  // A learning rate too small to move the weights: the second run starts where the first
  // ended, and saves that adapter again.
  Result b = run(common + " --iterations 1 --lr 1e-12 --adapter " + (first / "adapter").string() +
                 " --output-dir " + second.string());
  ASSERT_EQ(b.status, 0) << b.out;
  auto eval = [&](const fs::path& adapter) {
    Result r = run("eval " + tiny_model().string() + " " + data.string() + " --json" +
                   (adapter.empty() ? "" : " --adapter " + adapter.string()));
    EXPECT_EQ(r.status, 0) << r.out;
    return nlohmann::json::parse(r.out)["loss"].get<double>();
  };
  double base = eval({}), trained = eval(first / "adapter"), again = eval(second / "adapter");
  EXPECT_LT(trained, base - 0.2);
  EXPECT_NEAR(again, trained, 1e-4);
  // The first step of the second run already has the trained adapter's loss.
  EXPECT_LT(metric_losses(second / "metrics.jsonl").front(),
            metric_losses(first / "metrics.jsonl").front() - 0.2f);
  EXPECT_EQ(ft::io::load_adapter(second / "adapter").modules,
            ft::io::load_adapter(first / "adapter").modules);

  Result full = run(common + " --method full --adapter " + (first / "adapter").string() +
                    " --output-dir " + temp("continue_full").string());
  EXPECT_EQ(full.status, 1);
  EXPECT_TRUE(one_error_line(full.out)) << full.out;
}

// ft init never replaces a folder that holds something (a model, say).
TEST(CliTrain, InitRefusesAFolderThatHoldsSomething) {
  fs::path dir = temp("init_existing");
  fs::create_directories(dir);
  std::ofstream(dir / "config.json") << "{\"precious\": true}";
  Result r = run("init --arch llama --out " + dir.string());
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(one_error_line(r.out)) << r.out;
  EXPECT_NE(r.out.find("already exists"), std::string::npos) << r.out;
  std::ifstream in(dir / "config.json");
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "{\"precious\": true}");
}

TEST(CliTrain, SeveralDataSourcesMixByWeight) {
  const fs::path a = small_data(8);
  const fs::path b = temp("more.jsonl");
  {
    std::ifstream in(kAddition + "/train.jsonl");
    std::ofstream out(b);
    std::string line;
    for (int i = 0; i < 48 && std::getline(in, line); ++i)
      if (i >= 8) out << line << "\n";
  }
  // DATA and --data together; 48 records an epoch, 3/4 of them drawn from a.
  Result v = run("train validate " + tiny_model().string() + " " + a.string() + ":3 --data " +
                 b.string() + ":1 --batch-size 4");
  ASSERT_EQ(v.status, 0) << v.out;
  EXPECT_NE(v.out.find(a.string() + ":3 + " + b.string() + ":1: 48 records"), std::string::npos)
      << v.out;
  EXPECT_NE(v.out.find("steps: 12"), std::string::npos) << v.out;
  // A weight on one source only is one error line.
  Result half = run("train validate " + tiny_model().string() + " " + a.string() + " --data " +
                    b.string() + ":1");
  EXPECT_EQ(half.status, 1);
  EXPECT_TRUE(one_error_line(half.out)) << half.out;
  EXPECT_NE(half.out.find("give every data source a weight"), std::string::npos) << half.out;
}

TEST(CliTrain, DataOptionsOfFtDataWorkOnTrain) {
  const fs::path data = temp("with_bad_lines.jsonl");
  {
    std::ifstream in(small_data(6));
    std::ofstream out(data);
    out << in.rdbuf() << "{\"bad\": 1}\nnot json\n";
  }
  const std::string base = "train validate " + tiny_model().string() + " " + data.string();
  Result stops = run(base);
  EXPECT_EQ(stops.status, 1);
  EXPECT_TRUE(one_error_line(stops.out)) << stops.out;
  EXPECT_NE(stops.out.find(":7: missing field \"messages\""), std::string::npos) << stops.out;

  Result skips = run(base + " --skip-bad-records");
  ASSERT_EQ(skips.status, 0) << skips.out;
  EXPECT_NE(skips.out.find("6 records"), std::string::npos) << skips.out;
  EXPECT_NE(skips.out.find("2 bad records skipped"), std::string::npos) << skips.out;
  EXPECT_NE(skips.out.find("skipped " + data.string() + ":8: not valid JSON"), std::string::npos)
      << skips.out;

  // --format names the format instead of detecting it; chat records are no text records.
  Result text = run(base + " --format text");
  EXPECT_EQ(text.status, 1);
  EXPECT_NE(text.out.find(":1: missing field \"text\""), std::string::npos) << text.out;

  // Without the template, the turns are concatenated: other token counts.
  const fs::path yaml = temp("no_template.yaml");
  std::ofstream(yaml) << "no_template: true\nskip_bad_records: true\n";
  Result plain = run(base + " --config " + yaml.string());
  ASSERT_EQ(plain.status, 0) << plain.out;
  EXPECT_NE(plain.out.find("6 records"), std::string::npos) << plain.out;
  const auto tokens = [](const std::string& out) {
    const size_t at = out.find(" tokens (");
    return out.substr(out.rfind(' ', at - 1) + 1, at - out.rfind(' ', at - 1) - 1);
  };
  EXPECT_NE(tokens(plain.out), tokens(skips.out)) << plain.out << skips.out;
  Result both = run(base + " --no-template --template chatml");
  EXPECT_EQ(both.status, 1);
  EXPECT_NE(both.out.find("--template and --no-template exclude each other"), std::string::npos)
      << both.out;
}

TEST(CliTrain, EvalReadsItsOptionsFromYamlToo) {
  const fs::path data = small_data(8);
  const fs::path yaml = temp("eval.yaml");
  std::ofstream(yaml) << "model: " << tiny_model().string() << "\ndata: " << data.string()
                      << "\nmax_seq_length: 20\n";
  Result r = run("eval --config " + yaml.string() + " --json");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto from_yaml = nlohmann::json::parse(r.out);
  Result direct =
      run("eval " + tiny_model().string() + " " + data.string() + " --max-seq-length 20 --json");
  ASSERT_EQ(direct.status, 0) << direct.out;
  EXPECT_EQ(from_yaml, nlohmann::json::parse(direct.out));
  // The YAML file's length, not eval's default of 512: fewer tokens than without it.
  EXPECT_LT(
      from_yaml["tokens"].get<double>(),
      nlohmann::json::parse(
          run("eval " + tiny_model().string() + " " + data.string() + " --json").out)["tokens"]
          .get<double>());
  Result none = run("eval --json");
  EXPECT_EQ(none.status, 1);
  EXPECT_NE(none.out.find("no model (give MODEL or the 'model' key)"), std::string::npos)
      << none.out;
}

// QLoRA from the command line: ft train --quantize-bits, training on a quantized model
// folder, ft fuse of its adapter (re-quantized or --dequantize), and the errors of
// ft train and ft validate.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "ft/io/adapters.h"
#include "ft/io/model_folder.h"
#include "ft/models/quantize.h"
#include "ft/models/registry.h"
#include "tests/cli_train/cli_train_util.h"

namespace {

using namespace ft::testing::cli_train;
using nlohmann::json;

// The tiny model quantized by ft (4 bits, groups of 64) and saved with its tokenizer.
const fs::path& quantized_tiny_model() {
  static fs::path dir = [] {
    fs::path d = temp("quantized_model");
    auto model = ft::models::load_model(tiny_model());
    ft::models::quantize_model(*model, {.group_size = 64, .bits = 4});
    json config = ft::io::read_config(tiny_model()).json();
    ft::models::set_quantization_config(config, ft::io::QuantSpec{.group_size = 64, .bits = 4});
    ft::io::save_model_folder(model->parameters(), config, d,
                              {.json_files = {}, .copy_tokenizer_from = tiny_model()});
    return d;
  }();
  return dir;
}

}  // namespace

TEST(CliQlora, QuantizeBitsTrainsAdaptersOnAQuantizedBase) {
  fs::path data = small_data(64);
  fs::path out = temp("qlora");
  Result r = run("train " + tiny_model().string() + " " + data.string() +
                 " --quantize-bits 4 --iterations 25 --lr 1e-2 --batch-size 8 --lora-rank 4"
                 " --output-dir " +
                 out.string());
  ASSERT_EQ(r.status, 0) << r.out;
  // q, k, v, o, gate, up of 2 layers and the embedding; down_proj's 176 inputs are no
  // multiple of 64.
  EXPECT_NE(r.out.find("quantized 13 layers to 4 bits (groups of 64)"), std::string::npos) << r.out;
  auto losses = metric_losses(out / "metrics.jsonl");
  ASSERT_EQ(losses.size(), 25u);
  EXPECT_LT(losses.back(), losses.front() - 0.5) << r.out;
  auto adapter = ft::io::load_adapter(out / "adapter");
  EXPECT_EQ(adapter.weights.size(), 16u);  // A and B of q/k/v/o in 2 layers

  // ft eval and ft generate with --quantize-bits quantize the base as training did: the
  // adapter gives what it gives on the same base quantized and saved (the same bits).
  const std::string with_adapter = " --adapter " + (out / "adapter").string();
  const double on_saved_base = eval_loss(quantized_tiny_model(), data, with_adapter);
  const double quantized_here = eval_loss(tiny_model(), data, with_adapter + " --quantize-bits 4");
  EXPECT_EQ(quantized_here, on_saved_base);
  EXPECT_LT(quantized_here, eval_loss(tiny_model(), data, "--quantize-bits 4") - 0.5);
  // On the float base the adapter computes something else.
  EXPECT_NE(eval_loss(tiny_model(), data, with_adapter), quantized_here);
  const std::string prompt = " --prompt '12+7=' --raw --max-tokens 8 --json";
  Result generated =
      run("generate " + tiny_model().string() + prompt + with_adapter + " --quantize-bits 4");
  Result on_saved = run("generate " + quantized_tiny_model().string() + prompt + with_adapter);
  ASSERT_EQ(generated.status, 0) << generated.out;
  EXPECT_EQ(generated.out, on_saved.out);
}

TEST(CliQlora, TrainOnAQuantizedFolderThenFuse) {
  fs::path data = small_data(64);
  fs::path out = temp("on_quantized");
  const fs::path& base = quantized_tiny_model();
  Result r =
      run("train " + base.string() + " " + data.string() +
          " --iterations 25 --lr 1e-2 --batch-size 8 --lora-rank 4 --output-dir " + out.string());
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(r.out.find("quantized 13"), std::string::npos) << r.out;  // trained as it is
  fs::path adapter = out / "adapter";
  double base_loss = eval_loss(base, data);
  double adapted_loss = eval_loss(base, data, "--adapter " + adapter.string());
  EXPECT_LT(adapted_loss, base_loss - 0.3);

  fs::path fused = temp("fused");
  Result f =
      run("fuse " + base.string() + " --adapter " + adapter.string() + " --out " + fused.string());
  ASSERT_EQ(f.status, 0) << f.out;
  json config = json::parse(std::ifstream(fused / "config.json"));
  EXPECT_EQ(config["quantization"]["bits"], 4);
  auto model = ft::models::load_model(fused);
  EXPECT_EQ(model->find_module("model.layers.0.self_attn.q_proj")->type_name(), "QuantizedLinear");
  // Re-quantizing the merged weights moves the loss a little.
  EXPECT_NEAR(eval_loss(fused, data), adapted_loss, 0.05 * adapted_loss);

  fs::path dequantized = temp("fused_float");
  Result d = run("fuse " + base.string() + " --adapter " + adapter.string() + " --out " +
                 dequantized.string() + " --dequantize");
  ASSERT_EQ(d.status, 0) << d.out;
  config = json::parse(std::ifstream(dequantized / "config.json"));
  EXPECT_FALSE(config.contains("quantization"));
  auto float_model = ft::models::load_model(dequantized);
  EXPECT_EQ(float_model->find_module("model.embed_tokens")->type_name(), "Embedding");
  // The same function in floats.
  EXPECT_NEAR(eval_loss(dequantized, data), adapted_loss,
              ft::testing::tf32_tolerance(1e-5f) * adapted_loss);
}

TEST(CliQlora, BadQuantizationRequestsAreOneErrorLine) {
  fs::path data = small_data(8);
  const std::string tiny = tiny_model().string() + " " + data.string();
  const std::string quantized = quantized_tiny_model().string() + " " + data.string();
  struct Case {
    std::string args;
    std::string message;
  };
  std::vector<Case> cases = {
      {"train " + tiny + " --method full --quantize-bits 4 --output-dir " + temp("full").string(),
       "full fine-tuning needs a floating-point model: quantize bits were given"},
      {"train " + quantized + " --method full --output-dir " + temp("full_q").string(),
       "full fine-tuning needs a floating-point model: the model is quantized"},
      {"validate " + quantized + " --method full", "the model is quantized"},
      {"validate " + quantized + " --quantize-bits 4", "the model is quantized already"},
      {"eval " + quantized + " --quantize-bits 4", "is already quantized"},
  };
  for (const auto& c : cases) {
    Result r = run(c.args);
    EXPECT_EQ(r.status, 1) << c.args << "\n" << r.out;
    EXPECT_TRUE(one_error_line(r.out)) << r.out;
    EXPECT_NE(r.out.find(c.message), std::string::npos) << c.args << "\n" << r.out;
  }
  // Bits and group sizes are checked as the command line is read, the same on every command.
  for (const std::string& args :
       {"validate " + tiny + " --quantize-bits 7", "eval " + tiny + " --quantize-bits 7",
        "generate " + tiny_model().string() + " --prompt hi --quantize-bits 7"}) {
    Result r = run(args);
    EXPECT_EQ(r.status, 2) << args;
    EXPECT_EQ(r.out, "ft: error: --quantize-bits: 7 not in {0,2,3,4,5,6,8}\n") << args;
  }
  for (const std::string& args :
       {"validate " + tiny + " --quantize-bits 4 --quantize-group-size 48",
        "generate " + tiny_model().string() +
            " --prompt hi --quantize-bits 4 "
            "--quantize-group-size 48"}) {
    Result r = run(args);
    EXPECT_EQ(r.status, 2) << args;
    EXPECT_EQ(r.out, "ft: error: --quantize-group-size: 48 not in {32,64,128}\n") << args;
  }
  Result ok = run("validate " + tiny + " --quantize-bits 8 --quantize-group-size 32");
  EXPECT_EQ(ok.status, 0) << ok.out;
}

// A GGUF file as the model (tests/golden/gguf/tiny_chat_q8.gguf: Q8_0 and Q4_0 matrices, a
// SentencePiece tokenizer and a chat template in its metadata): LoRA trains on its own
// quantized weights, and the adapter lowers the loss in ft eval and loads in ft generate.
TEST(CliQlora, TrainsLoraOnAGgufFilesOwnQuantizedWeights) {
  const std::string gguf = std::string(FT_TEST_DATA) + "/gguf/tiny_chat_q8.gguf";
  fs::path data = small_data(64);
  fs::path out = temp("gguf_lora");
  Result r =
      run("train " + gguf + " " + data.string() +
          " --iterations 25 --lr 1e-2 --batch-size 8 --lora-rank 4 --output-dir " + out.string());
  ASSERT_EQ(r.status, 0) << r.out;
  auto losses = metric_losses(out / "metrics.jsonl");
  ASSERT_EQ(losses.size(), 25u);
  EXPECT_LT(losses.back(), losses.front() - 0.5) << r.out;
  fs::path adapter = out / "adapter";
  EXPECT_LT(eval_loss(gguf, data, "--adapter " + adapter.string()), eval_loss(gguf, data) - 0.3);

  Result g = run("generate " + gguf + " --adapter " + adapter.string() +
                 " --prompt hello --max-tokens 4 --json");
  ASSERT_EQ(g.status, 0) << g.out;
  EXPECT_NE(g.out.find("\"ids\""), std::string::npos) << g.out;
  Result info = run("info " + gguf);
  ASSERT_EQ(info.status, 0) << info.out;
  EXPECT_NE(info.out.find("2 layers, hidden 64"), std::string::npos) << info.out;

  // ft export merges the adapter into a GGUF file that evaluates as base + adapter did.
  fs::path merged = temp("gguf_export") / "merged.gguf";
  fs::create_directories(merged.parent_path());
  Result e = run("export " + gguf + " --adapter " + adapter.string() + " --type f32 --out " +
                 merged.string());
  ASSERT_EQ(e.status, 0) << e.out;
  EXPECT_NEAR(eval_loss(merged, data), eval_loss(gguf, data, "--adapter " + adapter.string()),
              1e-3);
}

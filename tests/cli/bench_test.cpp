// ft bench: its JSON line, the FLOPs formula it shares with hf_baseline.py, the loss of a
// random model, and its errors.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include <nlohmann/json.hpp>

#include "tests/test_util.h"

namespace {

using nlohmann::json;

const std::string kSmall = "bench --shape tiny --steps 2 --warmup 1 --seq-length 32 --batch-size 1";

json run_json(const std::string& args) {
  auto r = ft::testing::run_ft(args);
  EXPECT_EQ(r.status, 0) << r.out;
  return json::parse(r.out);
}

// hf_baseline.py's flops_per_token for the tiny shape (hidden 256, intermediate 688,
// 4 layers, 8 heads of 32, 4 kv heads, vocab 32000, tied), counted by hand: the
// parameters outside embed_tokens are per layer q 256x256, k and v 256x128, o 256x256,
// gate/up/down 3 x 256x688 and two norms of 256, plus the final norm.
double tiny_non_embedding() {
  double per_layer = 256.0 * 256 + 2 * 256.0 * 128 + 256.0 * 256 + 3 * 256.0 * 688 + 2 * 256;
  return 4 * per_layer + 256;
}

double tiny_forward_flops(int seq) {
  double non_embedding = tiny_non_embedding();
  double head = 2 * 256.0 * 32000;
  double attn = 2 * 2 * 4.0 * seq * 256 / 2;
  return 2 * non_embedding + head + attn;
}

}  // namespace

TEST(Bench, JsonLineHasTheBaselinesKeysAndARandomModelsLoss) {
  json r = run_json(kSmall + " --json");
  EXPECT_EQ(r["system"], "ft");
  EXPECT_EQ(r["shape"], "tiny");
  EXPECT_EQ(r["mode"], "lora");
  EXPECT_EQ(r["batch"], 1);
  EXPECT_EQ(r["seq"], 32);
  EXPECT_EQ(r["grad_ckpt"], false);
  ASSERT_TRUE(r["tokens_per_s"].is_number()) << r;
  EXPECT_GT(r["tokens_per_s"].get<double>(), 0);
  // tokens/s is the batch's 32 tokens over the mean step time (both rounded).
  EXPECT_NEAR(r["tokens_per_s"].get<double>() * r["step_s"].get<double>(), 32.0, 0.5);
  EXPECT_GT(r["peak_mem_gib"].get<double>(), 0.0);
  // LoRA r16 on q, k, v, o, gate, up, down of 4 layers: r (in + out) each.
  EXPECT_EQ(r["trainable_params"], 4 * 16 * (512 + 384 + 384 + 512 + 3 * (256 + 688)));
  // Random init: the embedding's std 0.02 times the unit-RMS final hidden state
  // (norm 16) gives logits of std ~0.32, so the cross-entropy of random targets is
  // ln(32000) + 0.32^2 / 2 ~ 10.42, give or take ~0.06 over 32 tokens.
  ASSERT_TRUE(r["loss"].is_number()) << r;
  double loss = r["loss"].get<double>();
  EXPECT_TRUE(std::isfinite(loss));
  EXPECT_NEAR(loss, std::log(32000.0), 0.3);
  // LoRA: forward, input gradients and attention's backward.
  EXPECT_DOUBLE_EQ(r["flops_per_token"].get<double>(),
                   2 * tiny_forward_flops(32) + 2 * 2 * 4.0 * 32 * 256 / 2);
  if (r["device"] == "cpu") {
    EXPECT_TRUE(r["mfu"].is_null()) << r;
  }
}

TEST(Bench, MfuIsTokensTimesFlopsOverThePeak) {
  json r = run_json(kSmall + " --method full --peak-tflops 0.5 --json");
  EXPECT_EQ(r["mode"], "full");
  EXPECT_EQ(r["trainable_params"].get<double>(), 32000.0 * 256 + tiny_non_embedding());
  double flops = r["flops_per_token"].get<double>();
  EXPECT_DOUBLE_EQ(flops, 3 * tiny_forward_flops(32));
  double tokens_per_s = r["tokens_per_s"].get<double>();
  ASSERT_TRUE(r["mfu"].is_number()) << r;
  // tokens_per_s is rounded to an integer and mfu to 4 digits.
  EXPECT_NEAR(r["mfu"].get<double>(), tokens_per_s * flops / 0.5e12,
              std::max(1e-4, flops / 0.5e12));
}

TEST(Bench, BadShapeOrModelIsAnError) {
  auto shape = ft::testing::run_ft("bench --shape huge --json");
  EXPECT_EQ(shape.status, 1);
  EXPECT_EQ(shape.out,
            "ft: error: [bench] unknown shape 'huge'; known shapes: llama1b, llama8b, qwen05b, "
            "tiny\n");
  auto model = ft::testing::run_ft("bench --model /nonexistent/model --json");
  EXPECT_EQ(model.status, 1);
  EXPECT_NE(model.out.find("/nonexistent/model: no such model folder"), std::string::npos)
      << model.out;
  auto method = ft::testing::run_ft("bench --method prefix");
  EXPECT_EQ(method.status, 2) << method.out;
  // A step far past any machine's memory (terabytes of activations) is refused before the
  // weights are made.
  auto huge = ft::testing::run_ft("bench --shape llama8b --batch-size 64 --seq-length 8192");
  EXPECT_EQ(huge.status, 1) << huge.out;
  EXPECT_NE(huge.out.find("ft: error: [bench] a step of batch 64 x 8192 tokens needs about "),
            std::string::npos)
      << huge.out;
}

namespace {

// --lengths MIN:MAX batches samples of varied lengths as ft train does: padded batches
// carry padding, packed rows nearly none, and tokens/s counts the real tokens only.
TEST(Bench, VariedLengthsCountRealTokensPaddedOrPacked) {
  const std::string run =
      "bench --shape tiny --steps 2 --warmup 1 --seq-length 128 "
      "--batch-size 4 --lengths 8:64 --json";
  json padded = run_json(run);
  json packed = run_json(run + " --pack");
  for (const json* j : {&padded, &packed}) {
    EXPECT_EQ((*j)["lengths"], "8:64");
    const double share = (*j)["real_token_share"];
    EXPECT_GT(share, 0.3);
    EXPECT_LE(share, 1.0);
    // Real tokens over the step time: at most the rows' tokens per second.
    EXPECT_LE((*j)["tokens_per_s"].get<double>(), 4.0 * 128 / (*j)["step_s"].get<double>() * 1.01);
  }
  EXPECT_EQ(packed["pack"], true);
  // Packed rows of 128 hold several samples of at most 64: their rows are nearly full.
  EXPECT_GT(packed["real_token_share"].get<double>(), 0.85);

  auto bad = ft::testing::run_ft("bench --shape tiny --lengths 64:8");
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.out.find("--lengths needs 2 <= MIN <= MAX"), std::string::npos) << bad.out;
  auto pack = ft::testing::run_ft("bench --shape tiny --pack");
  EXPECT_EQ(pack.status, 1);
  EXPECT_NE(pack.out.find("--pack needs --lengths"), std::string::npos) << pack.out;
}

}  // namespace

namespace {

// --quantize-bits: LoRA over a quantized base (QLoRA), whose random model's loss is still
// about log(vocab); refused for full fine-tuning.
TEST(Bench, QloraOverAQuantizedBase) {
  json j = run_json(kSmall + " --quantize-bits 4 --json");
  EXPECT_EQ(j["quantize_bits"], 4);
  EXPECT_EQ(j["quantize_group_size"], 64);
  EXPECT_NEAR(j["loss"].get<double>(), std::log(32000.0), 0.5);
  EXPECT_EQ(j["trainable_params"], run_json(kSmall + " --json")["trainable_params"]);
  auto full = ft::testing::run_ft(kSmall + " --method full --quantize-bits 4");
  EXPECT_EQ(full.status, 1);
  EXPECT_NE(full.out.find("--quantize-bits needs LoRA or DoRA"), std::string::npos) << full.out;
}

}  // namespace

// FT_LOCATE_GPU_FAILURES=1 evaluates each step one operation at a time (Note [Naming a
// failed kernel]): the same losses, through the compiled step, checkpointing and the
// fused head alike.
TEST(Bench, LocatingFailuresEvaluatesTheSameStep) {
  const std::string run = kSmall + " --method full --grad-checkpoint --json";
  json plain = run_json(run);
  auto r = ft::testing::run_ft("FT_LOCATE_GPU_FAILURES=1 " + std::string(FT_BINARY) + " " + run,
                               "", /*raw=*/true);
  ASSERT_EQ(r.status, 0) << r.out;
  json located = json::parse(r.out);
  EXPECT_EQ(plain["loss"], located["loss"]) << plain << "\n" << located;
}

#include <gtest/gtest.h>

#include <mlx/ops.h>

#include "ft/io/model_folder.h"
#include "ft/io/torch_checkpoint.h"
#include "io_test_util.h"

namespace mx = mlx::core;
namespace fs = std::filesystem;
using ft::testing::error_of;
using ft::testing::TempDir;

TEST(TorchCheckpoint, StateDictEqualsPyTorch) {
  // The reference: the same tensors, made contiguous, saved by the safetensors library.
  auto want =
      ft::ParamMap::load_safetensors(ft::testing::golden_io("torch_bin_expected.safetensors"));
  auto got = ft::io::load_weights(ft::testing::golden_io("torch_bin"));
  // The file's (state dict) order, not sorted.
  EXPECT_EQ(got.names(),
            (std::vector<std::string>{"a.weight", "a.weight_t", "b.half", "c.bf16", "d.first",
                                      "d.second", "e.index", "f.scalar", "g.param"}));
  ft::testing::expect_same(ft::testing::sorted(got), want);
  // The transposed view shares a.weight's storage.
  EXPECT_TRUE(
      mx::array_equal(got.at("a.weight_t"), mx::transpose(got.at("a.weight"))).item<bool>());
  EXPECT_EQ(got.at("f.scalar").ndim(), 0u);
  EXPECT_EQ(got.at("f.scalar").item<float>(), 2.5f);
  EXPECT_EQ(got.at("e.index").data<int64_t>()[0], -5);
}

TEST(TorchCheckpoint, CastsOnlyFloatingTensors) {
  auto got = ft::io::load_torch_checkpoint(ft::testing::golden_io("torch_bin/pytorch_model.bin"),
                                           mx::float32);
  EXPECT_EQ(got.at("b.half").dtype(), mx::float32);
  EXPECT_EQ(got.at("c.bf16").dtype(), mx::float32);
  EXPECT_EQ(got.at("e.index").dtype(), mx::int64);
  auto want =
      ft::ParamMap::load_safetensors(ft::testing::golden_io("torch_bin_expected.safetensors"));
  EXPECT_TRUE(
      mx::array_equal(got.at("c.bf16"), mx::astype(want.at("c.bf16"), mx::float32)).item<bool>());
}

TEST(TorchCheckpoint, RefusesOtherGlobals) {
  const std::string file = ft::testing::golden_io("torch_bad/pytorch_model.bin");
  EXPECT_EQ(error_of([&] { ft::io::load_weights(file); }),
            "[pytorch] " + file +
                ": refuses global 'os.system' (only PyTorch tensor and storage types are loaded; "
                "the file "
                "may try to run code)");
}

TEST(TorchCheckpoint, TruncatedOrNotAZip) {
  TempDir dir;
  const std::string bytes =
      ft::testing::read_bytes(ft::testing::golden_io("torch_bin/pytorch_model.bin"));
  const fs::path cut = dir.path() / "pytorch_model.bin";
  ft::testing::write_bytes(cut, bytes.substr(0, bytes.size() / 2));
  EXPECT_EQ(error_of([&] { ft::io::load_weights(cut); }),
            "[zip] " + cut.string() +
                ": not a zip archive (no end-of-central-directory record; truncated?)");
  ft::testing::write_bytes(cut, "");
  EXPECT_NE(error_of([&] { ft::io::load_weights(dir.path()); }).find("[zip] " + cut.string()),
            std::string::npos);
}

TEST(TorchCheckpoint, RefusesStackGlobal) {
  const std::string file = ft::testing::golden_io("stack_global_eval.bin");
  EXPECT_EQ(
      error_of([&] { ft::io::load_weights(file); }),
      "[pytorch] " + file +
          ": refuses global 'builtins.eval' (only PyTorch tensor and storage types are loaded; the "
          "file may try to run code)");
}

TEST(TorchCheckpoint, ShardedBinEqualsSafetensors) {
  // transformers-style pytorch_model-*.bin shards of the same model as llama_sharded.
  auto want = ft::ParamMap::load_safetensors(ft::testing::golden_io("llama_expected.safetensors"));
  auto got = ft::io::load_weights(ft::testing::golden_io("llama_bin_sharded"));
  ft::testing::expect_same(got, want);
}

TEST(TorchCheckpoint, TruncatedPickle) {
  const std::string file = ft::testing::golden_io("truncated_pickle.bin");
  EXPECT_EQ(error_of([&] { ft::io::load_weights(file); }),
            "[pytorch] " + file + ": pickle ends early (truncated?)");
}

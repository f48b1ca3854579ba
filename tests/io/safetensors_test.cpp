#include <gtest/gtest.h>

#include <mlx/ops.h>

#include "ft/io/model_folder.h"
#include "ft/io/safetensors_file.h"
#include "io_test_util.h"

namespace mx = mlx::core;
using ft::testing::error_of;
using ft::testing::TempDir;

namespace {

// A safetensors file written by hand: a (2,) F32 and b (3,) F32, then `data_bytes`
// bytes of data (20 when complete).
std::string handmade(const std::string& header, size_t data_bytes) {
  std::string out;
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out += header;
  for (size_t i = 0; i < data_bytes; ++i) out.push_back(static_cast<char>(i == 3 ? 0x3f : 0));
  return out;
}

const std::string kHeader = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                            R"("b":{"dtype":"F32","shape":[3],"data_offsets":[8,20]}})";

}  // namespace

TEST(Safetensors, ReadsAHandWrittenFile) {
  TempDir dir;
  const auto file = dir.path() / "x.safetensors";
  ft::testing::write_bytes(file, handmade(kHeader, 20));
  auto p = ft::io::load_safetensors_file(file, std::nullopt);
  ASSERT_EQ(p.names(), (std::vector<std::string>{"a", "b"}));
  // Byte 3 is 0x3f: the float 0x3f000000 = 0.5.
  EXPECT_EQ(p.at("a").shape(), (mx::Shape{2}));
  EXPECT_EQ(p.at("a").data<float>()[0], 0.5f);
  EXPECT_EQ(p.at("b").shape(), (mx::Shape{3}));
  EXPECT_EQ(mx::sum(p.at("b")).item<float>(), 0.0f);
}

TEST(Safetensors, TruncatedFileNamesTheFileAndTensor) {
  TempDir dir;
  const auto file = dir.path() / "cut.safetensors";
  ft::testing::write_bytes(file, handmade(kHeader, 12));
  const uint64_t start = 8 + kHeader.size();
  EXPECT_EQ(error_of([&] { ft::io::load_weights(file); }),
            "[safetensors] " + file.string() + ": tensor 'b': ends at byte " +
                std::to_string(start + 20) + " but the file has " + std::to_string(start + 12) +
                " (truncated?)");
}

TEST(Safetensors, HeaderLongerThanTheFile) {
  TempDir dir;
  const auto file = dir.path() / "short.safetensors";
  const std::string full = handmade(kHeader, 20);
  ft::testing::write_bytes(file, full.substr(0, 40));
  EXPECT_EQ(error_of([&] { ft::io::load_weights(file); }),
            "[safetensors] " + file.string() + ": header of " + std::to_string(kHeader.size()) +
                " bytes does not fit in the file's 40 bytes (truncated or not safetensors?)");
  ft::testing::write_bytes(file, "abc");
  EXPECT_NE(error_of([&] { ft::io::load_weights(file); }).find("3 bytes, too short"),
            std::string::npos);
}

TEST(Safetensors, SizeThatDisagreesWithTheShape) {
  TempDir dir;
  const auto file = dir.path() / "bad.safetensors";
  std::string header = kHeader;
  header.replace(header.find("[3]"), 3, "[4]");
  ft::testing::write_bytes(file, handmade(header, 20));
  EXPECT_EQ(error_of([&] { ft::io::load_weights(file); }),
            "[safetensors] " + file.string() +
                ": tensor 'b': holds 12 bytes but shape [4] of F32 needs 16");
  header = kHeader;
  header.replace(header.find("F32"), 3, "Q7");
  ft::testing::write_bytes(file, handmade(header, 20));
  EXPECT_EQ(error_of([&] { ft::io::load_weights(file); }),
            "[safetensors] " + file.string() + ": tensor 'a': unsupported dtype 'Q7'");
  ft::testing::write_bytes(file, handmade("{not json", 0));
  EXPECT_NE(error_of([&] { ft::io::load_weights(file); }).find(": header is not valid JSON"),
            std::string::npos);
}

TEST(Safetensors, AgreesWithMlxReaderAndCasts) {
  const std::string file = ft::testing::golden_io("llama_expected.safetensors");
  auto mine = ft::io::load_weights(file);
  ft::testing::expect_same(mine, ft::ParamMap::load_safetensors(file));
  auto half = ft::io::load_weights(file, mx::bfloat16);
  for (const auto& [name, a] : mine) {
    ASSERT_EQ(half.at(name).dtype(), mx::bfloat16) << name;
    EXPECT_TRUE(mx::array_equal(half.at(name), mx::astype(a, mx::bfloat16)).item<bool>()) << name;
  }
}

// MLX writes "__metadata__": null when a file has no metadata; such files load.
TEST(Safetensors, NullMetadataFromMlxLoads) {
  auto path = std::filesystem::path(::testing::TempDir()) / "ft_null_metadata.safetensors";
  ft::ParamMap{{"w", mx::arange(4.0f)}}.save_safetensors(path.string());
  auto loaded = ft::io::load_weights(path);
  EXPECT_TRUE(mx::array_equal(loaded.at("w"), mx::arange(4.0f)).item<bool>());
  std::filesystem::remove(path);
}

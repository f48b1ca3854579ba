// GgufWriter against the `gguf` package's GGUFWriter (tests/golden/
// make_gguf_writer_fixture.py): the same content gives the same bytes, and ft's reader reads
// the written file back.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <mlx/ops.h>

#include "ft/core/error.h"
#include "ft/io/ggml_quants.h"
#include "ft/io/gguf_file.h"
#include "ft/io/gguf_writer.h"
#include "io_test_util.h"

namespace mx = mlx::core;
namespace ggml = ft::io::ggml;
using ft::io::GgufArray;
using ft::io::GgufValue;
using ft::io::GgufValueType;
using ft::io::GgufWriter;

namespace {

std::string file_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The fixture's content, in its order.
GgufWriter fixture_content() {
  GgufWriter w;
  w.add("general.architecture", GgufValue{std::string("llama")});
  w.add("test.u8", GgufValue{uint8_t(7)});
  w.add("test.i8", GgufValue{int8_t(-3)});
  w.add("test.u16", GgufValue{uint16_t(65000)});
  w.add("test.i16", GgufValue{int16_t(-12345)});
  w.add("test.u32", GgufValue{uint32_t(4000000000u)});
  w.add("test.i32", GgufValue{int32_t(-2000000000)});
  w.add("test.f32", GgufValue{1.5f});
  w.add("test.bool", GgufValue{true});
  w.add("test.string", GgufValue{std::string("h\xc3\xa9llo")});
  GgufArray strings{GgufValueType::String, {}};
  for (const char* s : {"a", "bc", ""}) strings.items.push_back(GgufValue{std::string(s)});
  w.add("test.strings", GgufValue{strings});
  GgufArray ints{GgufValueType::Int32, {}};
  for (int32_t i : {1, -2, 3}) ints.items.push_back(GgufValue{i});
  w.add("test.ints", GgufValue{ints});
  w.add("test.u64", GgufValue{uint64_t((1ull << 40) + 3)});
  w.add("test.i64", GgufValue{int64_t(-(1ll << 40) - 5)});
  w.add("test.f64", GgufValue{0.1});
  w.add("general.alignment", GgufValue{uint32_t(64)});
  w.add_tensor("t.f32",
               mx::reshape(mx::divide(mx::arange(6, mx::float32), mx::array(2.0f)), {2, 3}));
  w.add_tensor("t.f16", mx::astype(mx::array({1.0f, -2.0f, 3.5f, 0.25f}), mx::float16));
  std::vector<float> x(64);
  for (int i = 0; i < 64; ++i) x[i] = (float(i) - 20.0f) / 8.0f;
  w.add_tensor("t.q8_0", {2, 32}, ggml::Type::Q8_0,
               ggml::quantize(ggml::Type::Q8_0, x.data(), x.size()));
  return w;
}

}  // namespace

TEST(GgufWriter, WritesTheGgufPackagesBytes) {
  ft::testing::TempDir dir;
  const auto out = dir.path() / "out.gguf";
  fixture_content().write(out);
  const std::string expected = file_bytes(std::string(FT_TEST_DATA) + "/gguf/writer.gguf");
  const std::string written = file_bytes(out);
  ASSERT_EQ(written.size(), expected.size());
  size_t first = 0;
  while (first < written.size() && written[first] == expected[first]) ++first;
  EXPECT_EQ(first, written.size()) << "the first differing byte";
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "out.gguf.partial"));

  // ft's reader reads it back.
  ft::io::GgufFile g = ft::io::read_gguf_file(out);
  EXPECT_EQ(g.alignment, 64u);
  EXPECT_EQ(g.at("test.string").as_string(), "h\xc3\xa9llo");
  EXPECT_EQ(g.at("test.i64").as_int(), -(1ll << 40) - 5);
  ASSERT_EQ(g.tensors.size(), 3u);
  EXPECT_EQ(g.tensors[0].shape, (mx::Shape{2, 3}));
  EXPECT_TRUE(mx::array_equal(ft::io::load_gguf_tensor(g, g.tensors[1]),
                              mx::astype(mx::array({1.0f, -2.0f, 3.5f, 0.25f}), mx::float16))
                  .item<bool>());
  EXPECT_EQ(g.tensors[2].shape, (mx::Shape{2, 32}));
}

TEST(GgufWriter, BadContentIsRefusedAndNothingIsWritten) {
  GgufWriter w;
  w.add("a", GgufValue{uint32_t(1)});
  EXPECT_THROW(w.add("a", GgufValue{uint32_t(2)}), ft::Error);
  EXPECT_THROW(w.add("", GgufValue{uint32_t(2)}), ft::Error);
  EXPECT_THROW(w.add("empty", GgufValue{GgufArray{GgufValueType::Int32, {}}}), ft::Error);
  EXPECT_THROW(w.add("mixed", GgufValue{GgufArray{GgufValueType::Int32, {GgufValue{1.0f}}}}),
               ft::Error);
  EXPECT_THROW(w.add("general.alignment", GgufValue{uint32_t(48)}), ft::Error);
  EXPECT_THROW(w.add("general.alignment", GgufValue{uint64_t(64)}), ft::Error);
  std::vector<uint8_t> q8(34);
  EXPECT_THROW(w.add_tensor("q", {1, 31}, ggml::Type::Q8_0, q8), ft::Error);  // not whole blocks
  EXPECT_THROW(w.add_tensor("q", {1, 64}, ggml::Type::Q8_0, q8), ft::Error);  // too few bytes
  EXPECT_THROW(w.add_tensor("q", {1, 1, 1, 1, 32}, ggml::Type::Q8_0, q8), ft::Error);
  EXPECT_THROW(w.add_tensor(std::string(64, 'n'), {1, 32}, ggml::Type::Q8_0, q8), ft::Error);
  w.add_tensor("q", {1, 32}, ggml::Type::Q8_0, q8);
  EXPECT_THROW(w.add_tensor("q", {1, 32}, ggml::Type::Q8_0, q8), ft::Error);
  EXPECT_THROW(w.add_tensor("i", mx::array({1, 2})), ft::Error);  // int32: not written as is

  ft::testing::TempDir dir;
  EXPECT_THROW(w.write(dir.path() / "missing" / "out.gguf"), ft::Error);
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

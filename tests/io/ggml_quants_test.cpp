// GGUF's tensor block formats against the `gguf` package (tests/golden/
// make_ggml_quant_fixtures.py): dequantized values bit for bit, quantized bytes byte for
// byte, and the MLX affine form of Q4_0, Q4_1 and Q8_0 giving the same values.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include <mlx/ops.h>
#include <mlx/random.h>

#include "ft/core/error.h"
#include "ft/io/ggml_quants.h"
#include "ft/io/safetensors_file.h"
#include "tests/test_util.h"

namespace mx = mlx::core;
namespace ggml = ft::io::ggml;
using ggml::Type;

namespace {

const ft::ParamMap& fixture() {
  static const ft::ParamMap tensors = ft::io::load_safetensors_file(
      std::string(FT_TEST_DATA) + "/io/ggml_quants.safetensors", std::nullopt);
  return tensors;
}

std::vector<uint8_t> bytes_of(const std::string& name) {
  mx::array a = fixture().at(name);
  EXPECT_EQ(a.dtype(), mx::uint8) << name;
  a.eval();
  const uint8_t* p = a.data<uint8_t>();
  return std::vector<uint8_t>(p, p + a.size());
}

std::vector<float> floats_of(const mx::array& in) {
  mx::array a = mx::astype(in, mx::float32);
  a.eval();
  const float* p = a.data<float>();
  return std::vector<float>(p, p + a.size());
}

// Values that differ in their bits (NaN never occurs here).
int bit_differences(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  int differ = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    differ += std::memcmp(&a[i], &b[i], sizeof(float)) != 0;
  return differ;
}

}  // namespace

TEST(GgmlQuants, DequantizedValuesEqualTheGgufPackagesBitForBit) {
  for (Type t : {Type::Q4_0, Type::Q4_1, Type::Q5_0, Type::Q5_1, Type::Q8_0, Type::Q2_K, Type::Q4_K,
                 Type::Q5_K, Type::Q6_K}) {
    const std::string name = ggml::type_name(static_cast<uint32_t>(t));
    SCOPED_TRACE(name);
    ASSERT_TRUE(ggml::can_dequantize(t));
    std::vector<uint8_t> raw = bytes_of("raw." + name);
    std::vector<float> expected = floats_of(fixture().at("dequant." + name));
    const auto info = ggml::type_info(static_cast<uint32_t>(t));
    ASSERT_TRUE(info.has_value());
    ASSERT_EQ(raw.size() / size_t(info->bytes) * size_t(info->block), expected.size());
    std::vector<float> values(expected.size());
    ggml::dequantize(t, raw.data(), values.size(), values.data());
    EXPECT_EQ(bit_differences(values, expected), 0);
  }
}

TEST(GgmlQuants, QuantizedBytesEqualTheGgufPackagesByteForByte) {
  std::vector<float> input = floats_of(fixture().at("input"));
  for (Type t : {Type::Q8_0, Type::Q4_0, Type::Q4_1, Type::Q5_0, Type::Q5_1}) {
    const std::string name = ggml::type_name(static_cast<uint32_t>(t));
    SCOPED_TRACE(name);
    ASSERT_TRUE(ggml::can_quantize(t));
    std::vector<uint8_t> expected = bytes_of("quant." + name);
    std::vector<uint8_t> bytes = ggml::quantize(t, input.data(), input.size());
    ASSERT_EQ(bytes.size(), expected.size());
    size_t differ = 0;
    for (size_t i = 0; i < bytes.size(); ++i) differ += bytes[i] != expected[i];
    EXPECT_EQ(differ, 0u);
  }
}

// Note [K-quant search]: ggml's reference quantizers, as llama.cpp's quantizer runs them,
// on rows of many spreads (all positive, heavy tails, sparse, zero, tiny, equal).
TEST(GgmlQuants, QuantizedBytesEqualGgmlsReferenceQuantizers) {
  std::vector<float> input = floats_of(fixture().at("input.k"));
  for (Type t : {Type::Q5_0, Type::Q5_1, Type::Q4_K, Type::Q5_K, Type::Q6_K}) {
    const std::string name = ggml::type_name(static_cast<uint32_t>(t));
    SCOPED_TRACE(name);
    ASSERT_TRUE(ggml::can_quantize(t));
    std::vector<uint8_t> expected = bytes_of("ggml." + name);
    std::vector<uint8_t> bytes = ggml::quantize(t, input.data(), input.size());
    ASSERT_EQ(bytes.size(), expected.size());
    const size_t block_bytes = size_t(ggml::type_info(uint32_t(t))->bytes);
    size_t differ = 0;
    for (size_t b = 0; b < bytes.size() / block_bytes; ++b)
      differ += std::memcmp(&bytes[b * block_bytes], &expected[b * block_bytes], block_bytes) != 0;
    EXPECT_EQ(differ, 0u) << "blocks of " << bytes.size() / block_bytes;
    // And they round-trip within the format's error.
    std::vector<float> back(input.size());
    ggml::dequantize(t, bytes.data(), back.size(), back.data());
    for (int row : {0, 7}) {
      double err = 0, norm = 0;
      for (int i = 0; i < 1024; ++i) {
        err += std::pow(back[row * 1024 + i] - input[row * 1024 + i], 2);
        norm += std::pow(input[row * 1024 + i], 2);
      }
      EXPECT_LT(std::sqrt(err / norm), t == Type::Q6_K ? 0.02 : 0.1) << "row " << row;
    }
  }
}

TEST(GgmlQuants, AffineFormGivesTheSameValues) {
  // Note [GGUF blocks as MLX affine groups]: (4, 256) tensors.
  ft::testing::OnCpu on_cpu;
  for (Type t : {Type::Q4_0, Type::Q4_1, Type::Q8_0}) {
    const std::string name = ggml::type_name(static_cast<uint32_t>(t));
    SCOPED_TRACE(name);
    ASSERT_TRUE(ggml::maps_to_affine(t));
    std::vector<uint8_t> raw = bytes_of("raw." + name);
    std::vector<float> expected = floats_of(fixture().at("dequant." + name));
    ggml::Affine a = ggml::to_affine(t, raw.data(), 4, 256, mx::float32);
    EXPECT_EQ(a.bits, t == Type::Q8_0 ? 8 : 4);
    EXPECT_EQ(a.group_size, 32);
    EXPECT_EQ(a.weight.shape(), (mx::Shape{4, 256 * a.bits / 32}));
    EXPECT_EQ(a.scales.shape(), (mx::Shape{4, 8}));
    mx::array w = mx::dequantize(a.weight, a.scales, a.biases, 32, a.bits);
    // Equal values; only a zero's sign may differ (Q4_0's 0 d is -0 for a negative d, where
    // 8 d - 8 d is +0).
    std::vector<float> values = floats_of(w);
    size_t differ = 0;
    for (size_t i = 0; i < values.size(); ++i) differ += values[i] != expected[i];
    EXPECT_EQ(differ, 0u);
    // The same product as with the dequantized weight.
    mx::array x = mx::random::normal({3, 256});
    mx::array y = mx::quantized_matmul(x, a.weight, a.scales, a.biases, true, 32, a.bits);
    mx::array ref = mx::matmul(x, mx::transpose(w));
    EXPECT_TRUE(ft::testing::all_close(y, ref, 1e-5, 1e-4));
  }
}

TEST(GgmlQuants, TypesAndErrors) {
  EXPECT_EQ(ggml::type_name(12), "Q4_K");
  EXPECT_EQ(ggml::type_name(23), "IQ4_XS");
  EXPECT_EQ(ggml::type_name(99), "unknown");
  EXPECT_FALSE(ggml::type_info(23).has_value());
  EXPECT_EQ(ggml::type_info(14)->bytes, 210);
  EXPECT_EQ(ggml::type_info(30)->block, 1);
  float x[32] = {};
  std::vector<uint8_t> block(144);
  EXPECT_THROW(ggml::quantize(Type::Q4_K, x, 32), ft::Error);
  EXPECT_THROW(ggml::quantize(Type::Q5_K, x, 32), ft::Error);
  EXPECT_THROW(ggml::quantize(Type::Q2_K, x, 256), ft::Error);
  EXPECT_THROW(ggml::quantize(Type::Q8_0, x, 31), ft::Error);
  EXPECT_THROW(ggml::dequantize(Type::Q4_K, block.data(), 100, x), ft::Error);
  EXPECT_THROW(ggml::dequantize(Type::Q8_K, block.data(), 256, x), ft::Error);
  EXPECT_THROW(ggml::to_affine(Type::Q4_K, block.data(), 1, 256, mx::float32), ft::Error);
  EXPECT_THROW(ggml::to_affine(Type::Q4_0, block.data(), 1, 48, mx::float32), ft::Error);
}

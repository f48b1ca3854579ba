// ft's GGUF reader: the fixtures of tests/golden/gguf (make_gguf_fixtures.py) read as the
// gguf package reads them (its report is the .json next to each file); every truncation
// and random damage of a file is refused with an ft::Error or read, never a crash; and
// headers made by hand, byte by byte, are refused for each fault with the fact and the byte.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <random>

#include <mlx/ops.h>
#include <mlx/transforms.h>  // defines: eval
#include <nlohmann/json.hpp>

#include "ft/io/gguf_file.h"
#include "io_test_util.h"

namespace mx = mlx::core;
namespace fs = std::filesystem;
namespace ggml = ft::io::ggml;
using ft::io::GgufValueType;
using ft::testing::error_of;
using ft::testing::TempDir;

namespace {

fs::path fixture(const std::string& name) {
  return fs::path(FT_TEST_DATA) / "gguf" / name;
}

// fn throws an ft::Error whose message contains part.
template <typename Fn>
void expect_error(Fn&& fn, const std::string& part) {
  const std::string error = error_of(fn);
  EXPECT_NE(error.find(part), std::string::npos) << error;
}

nlohmann::json report_of(const std::string& name) {
  std::ifstream in(fixture(name + ".json"));
  return nlohmann::json::parse(in);
}

// A metadata value as nlohmann::json, to compare with the gguf package's report.
nlohmann::json to_json(const ft::io::GgufValue& v) {
  switch (v.type()) {
    case GgufValueType::Float32:
    case GgufValueType::Float64:
      return v.as_float();
    case GgufValueType::Bool:
      return v.as_bool();
    case GgufValueType::String:
      return v.as_string();
    case GgufValueType::UInt64:
      return std::get<uint64_t>(v.value);
    case GgufValueType::Array: {
      nlohmann::json out = nlohmann::json::array();
      for (const auto& item : v.as_array().items) out.push_back(to_json(item));
      return out;
    }
    default:
      return v.as_int();
  }
}

// The type list the package reports: ["ARRAY", "ARRAY", "INT32"] for nested arrays.
nlohmann::json types_of(const ft::io::GgufValue& v) {
  std::string name = ft::io::gguf_value_type_name(v.type());
  std::transform(name.begin(), name.end(), name.begin(), ::toupper);
  nlohmann::json out = {name};
  if (v.type() == GgufValueType::Array) {
    const auto& array = v.as_array();
    nlohmann::json inner;
    if (!array.items.empty()) {
      inner = types_of(array.items.front());
    } else {
      std::string element = ft::io::gguf_value_type_name(array.element_type);
      std::transform(element.begin(), element.end(), element.begin(), ::toupper);
      inner = {element};
    }
    out.insert(out.end(), inner.begin(), inner.end());
  }
  return out;
}

void expect_as_reported(const std::string& name) {
  SCOPED_TRACE(name);
  const auto gguf = ft::io::read_gguf_file(fixture(name + ".gguf"));
  const auto report = report_of(name);
  EXPECT_EQ(gguf.version, report["version"].get<uint32_t>());
  EXPECT_EQ(gguf.alignment, report["alignment"].get<uint64_t>());
  EXPECT_EQ(gguf.data_offset, report["data_offset"].get<uint64_t>());
  ASSERT_EQ(gguf.metadata.size(), report["metadata"].size());
  for (size_t i = 0; i < gguf.metadata.size(); ++i) {
    const auto& [key, value] = gguf.metadata[i];
    const auto& want = report["metadata"][i];
    EXPECT_EQ(key, want["key"].get<std::string>());
    EXPECT_EQ(types_of(value), want["types"]) << key;
    EXPECT_EQ(to_json(value), want["value"]) << key;
  }
  ASSERT_EQ(gguf.tensors.size(), report["tensors"].size());
  for (size_t i = 0; i < gguf.tensors.size(); ++i) {
    const auto& t = gguf.tensors[i];
    const auto& want = report["tensors"][i];
    EXPECT_EQ(t.name, want["name"].get<std::string>());
    EXPECT_EQ(static_cast<uint32_t>(t.type), want["type_id"].get<uint32_t>()) << t.name;
    EXPECT_EQ(ggml::type_name(static_cast<uint32_t>(t.type)), want["type"]) << t.name;
    auto dims = want["dims"].get<std::vector<int32_t>>();
    EXPECT_EQ(t.shape, mx::Shape(dims.rbegin(), dims.rend())) << t.name;
    EXPECT_EQ(t.nbytes, want["n_bytes"].get<uint64_t>()) << t.name;
    EXPECT_EQ(t.offset, want["offset"].get<uint64_t>()) << t.name;
  }
}

TEST(GgufFile, FixturesReadAsTheGgufPackageReadsThem) {
  expect_as_reported("llama_f32");
  expect_as_reported("llama_f16");
  expect_as_reported("types");
}

TEST(GgufFile, TensorsLoadWithTheirShapeDtypeAndValues) {
  const auto gguf = ft::io::read_gguf_file(fixture("types.gguf"));
  // make_gguf_fixtures.py's values: arange(n) / 8 for floats, arange(n) - n / 2 for integers.
  const std::pair<const char*, mx::Dtype> expected[] = {
      {"f32", mx::float32}, {"f16", mx::float16}, {"bf16", mx::bfloat16}, {"f64", mx::float64},
      {"i8", mx::int8},     {"i16", mx::int16},   {"i32", mx::int32},     {"i64", mx::int64}};
  for (const auto& [name, dtype] : expected) {
    const auto* info = gguf.find_tensor(name);
    ASSERT_NE(info, nullptr) << name;
    const mx::array a = ft::io::load_gguf_tensor(gguf, *info);
    EXPECT_EQ(a.dtype(), dtype) << name;
    EXPECT_EQ(a.shape(), info->shape) << name;
    const int n = static_cast<int>(a.size());
    mx::array want = mx::issubdtype(dtype, mx::floating)
                         ? mx::divide(mx::arange(n, mx::float32), mx::array(8.0f))
                         : mx::subtract(mx::arange(n, mx::int32), mx::array(n / 2));
    EXPECT_TRUE(mx::array_equal(mx::astype(mx::flatten(a), mx::float32, mx::Device::cpu),
                                mx::astype(want, mx::float32), mx::Device::cpu)
                    .item<bool>())
        << name;
  }
  const auto* q4_k = gguf.find_tensor("q4_k");
  ASSERT_NE(q4_k, nullptr);
  EXPECT_EQ(q4_k->shape, (mx::Shape{3, 512}));
  EXPECT_EQ(ft::io::read_gguf_tensor_bytes(gguf, *q4_k).size(), 3u * 2 * 144);
  expect_error([&] { ft::io::load_gguf_tensor(gguf, *q4_k); },
               "tensor 'q4_k' is Q4_K (12), a quantized type ft does not load yet");
}

TEST(GgufFile, ValuesRefuseTheWrongType) {
  const auto gguf = ft::io::read_gguf_file(fixture("types.gguf"));
  EXPECT_EQ(gguf.at("general.architecture").as_string(), "test");
  EXPECT_EQ(gguf.at("test.uint32").as_int(), 4000000000);
  EXPECT_EQ(gguf.at("test.float32").as_float(), 0.25);
  EXPECT_EQ(gguf.at("test.array.nested").as_array().items[2].as_array().items[1].as_int(), 5);
  expect_error([&] { gguf.at("test.uint32").as_string(); },
               "a value of type uint32 is not a string");
  expect_error([&] { gguf.at("test.string").as_int(); },
               "a value of type string is not an integer");
  expect_error([&] { gguf.at("test.int32").as_float(); },
               "a value of type int32 is not a float32 or float64");
  expect_error([&] { gguf.at("test.uint64").as_int(); },
               "uint64 value 18446744073709551615 does not fit an int64");
  expect_error([&] { gguf.at("test.array.int32").as_bool(); },
               "a value of type array is not a bool");
  expect_error([&] { gguf.at("test.missing"); }, "types.gguf: metadata 'test.missing' is missing");
}

// Every prefix of a fixture: shorter than its last tensor's end is refused, longer reads.
void expect_prefixes_refused(const std::string& name, const TempDir& dir) {
  SCOPED_TRACE(name);
  const auto whole = ft::io::read_gguf_file(fixture(name));
  uint64_t needed = 0;
  for (const auto& t : whole.tensors) needed = std::max(needed, t.offset + t.nbytes);
  const fs::path copy = dir.path() / name;
  fs::copy_file(fixture(name), copy);
  int refused = 0;
  for (uint64_t size = fs::file_size(copy); size-- > 0;) {
    fs::resize_file(copy, size);
    try {
      ft::io::read_gguf_file(copy);
      EXPECT_GE(size, needed) << "a prefix of " << size << " bytes was read";
    } catch (const ft::Error& e) {
      EXPECT_LT(size, needed) << e.what();
      ++refused;
    }
  }
  EXPECT_EQ(refused, static_cast<int>(needed));
}

TEST(GgufFile, EveryTruncationIsRefused) {
  TempDir dir;
  expect_prefixes_refused("types.gguf", dir);
  expect_prefixes_refused("llama_f32.gguf", dir);
}

// mx::load_gguf crashed on 12 of 20 such copies.
TEST(GgufFile, RandomDamageIsRefusedOrRead) {
  TempDir dir;
  const std::string bytes = ft::testing::read_bytes(fixture("llama_f32.gguf"));
  const uint64_t header = ft::io::read_gguf_file(fixture("llama_f32.gguf")).data_offset;
  std::mt19937 rng(1234);
  int refused = 0, read = 0;
  for (int copy = 0; copy < 200; ++copy) {
    std::string damaged = bytes;
    for (int i = 0; i < 8; ++i)  // mostly in the header, where the counts and offsets are
      damaged[rng() % (i < 6 ? header : damaged.size())] = static_cast<char>(rng());
    const fs::path file = dir.path() / ("damaged_" + std::to_string(copy) + ".gguf");
    ft::testing::write_bytes(file, damaged);
    try {
      const auto gguf = ft::io::read_gguf_file(file);
      for (const auto& t : gguf.tensors)
        if (t.type == ggml::Type::F32) mx::eval(ft::io::load_gguf_tensor(gguf, t));
      ++read;
    } catch (const ft::Error& e) {
      EXPECT_NE(std::string(e.what()).find(file.string() + ": "), std::string::npos) << e.what();
      ++refused;
    }
    fs::remove(file);
  }
  EXPECT_GT(refused, 100);  // 198 of the 200 with this seed
  EXPECT_EQ(refused + read, 200);
}

// GGUF headers made by hand.
std::string le(uint64_t v, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return out;
}

std::string str(const std::string& s) {
  return le(s.size(), 8) + s;
}

struct Builder {
  std::string magic = "GGUF";
  uint32_t version = 3;
  std::string pairs, infos;
  uint64_t pair_count = 0, tensor_count = 0;
  uint64_t alignment = 32;
  uint64_t data_bytes = 0;

  Builder& pair(const std::string& key, uint32_t type, const std::string& value) {
    pairs += str(key) + le(type, 4) + value;
    ++pair_count;
    return *this;
  }
  Builder& tensor(const std::string& name, const std::vector<uint64_t>& dims, uint32_t type,
                  uint64_t offset) {
    infos += str(name) + le(dims.size(), 4);
    for (auto d : dims) infos += le(d, 8);
    infos += le(type, 4) + le(offset, 8);
    ++tensor_count;
    return *this;
  }
  std::string bytes() const {
    std::string out =
        magic + le(version, 4) + le(tensor_count, 8) + le(pair_count, 8) + pairs + infos;
    out.resize((out.size() + alignment - 1) / alignment * alignment, '\0');
    return out + std::string(data_bytes, '\0');
  }
};

constexpr uint32_t kUInt8 = 0, kUInt32 = 4, kBool = 7, kString = 8, kArray = 9;
constexpr uint32_t kF32 = 0, kQ4_0 = 2, kF64 = 28;

// A valid file: one metadata pair and two F32 tensors of 4 values, 32 bytes apart.
Builder valid() {
  Builder b;
  b.pair("general.architecture", kString, str("llama"));
  b.tensor("a", {4}, kF32, 0).tensor("b", {2, 2}, kF32, 32);
  b.data_bytes = 48;
  return b;
}

class GgufHeaders : public ::testing::Test {
 protected:
  // The error reading these bytes gives (and a failure when there is none).
  std::string error_for(const std::string& bytes) {
    ft::testing::write_bytes(file_, bytes);
    return error_of([&] { ft::io::read_gguf_file(file_); });
  }
  void expect_refused(const Builder& b, const std::string& part) {
    const std::string error = error_for(b.bytes());
    EXPECT_NE(error.find(part), std::string::npos) << error;
    EXPECT_NE(error.find("[gguf] " + file_.string() + ": "), std::string::npos) << error;
  }
  TempDir dir_;
  fs::path file_ = dir_.path() / "model.gguf";
};

TEST_F(GgufHeaders, TheValidOneReads) {
  ft::testing::write_bytes(file_, valid().bytes());
  const auto gguf = ft::io::read_gguf_file(file_);
  ASSERT_EQ(gguf.tensors.size(), 2u);
  EXPECT_EQ(gguf.tensors[1].shape, (mx::Shape{2, 2}));
  EXPECT_EQ(gguf.tensors[1].offset, gguf.data_offset + 32);
  EXPECT_EQ(gguf.data_offset % 32, 0u);
  Builder v2 = valid();
  v2.version = 2;
  ft::testing::write_bytes(file_, v2.bytes());
  EXPECT_EQ(ft::io::read_gguf_file(file_).version, 2u);
}

TEST_F(GgufHeaders, MagicAndVersion) {
  Builder b = valid();
  b.magic = "GGUX";
  expect_refused(b, "not a GGUF file (it does not start with \"GGUF\"), at byte 0");
  b = valid();
  b.version = 1;
  expect_refused(b, "GGUF version 1 is not supported (2 and 3 are), at byte 4");
  b.version = 4;
  expect_refused(b, "GGUF version 4 is not supported");
  b.version = 0x03000000;
  expect_refused(b, "a big-endian GGUF file, which ft does not read");
  EXPECT_NE(error_for("GGU").find("the magic \"GGUF\" needs 4 bytes but the file has 3 left"),
            std::string::npos);
  EXPECT_NE(error_for("").find("at byte 0"), std::string::npos);
}

TEST_F(GgufHeaders, HugeCountsAreRefusedBeforeAllocating) {
  Builder b = valid();
  b.tensor_count = uint64_t{1} << 60;
  expect_refused(b, "a tensor count of 1152921504606846976 cannot fit in the file's");
  b = valid();
  b.pair_count = ~uint64_t{0};
  expect_refused(b, "a metadata count of 18446744073709551615 cannot fit");
  b = valid();
  b.pair("x.array", kArray, le(kUInt8, 4) + le(uint64_t{1} << 62, 8));
  expect_refused(b, "metadata 'x.array': array of 4611686018427387904 uint8 values cannot fit");
  b = valid();
  b.pair("x.array", kArray, le(kString, 4) + le(1000, 8) + str("a"));
  expect_refused(b, "array of 1000 string values cannot fit");
  b = valid();
  b.pair("x.string", kString, le(~uint64_t{0}, 8));
  expect_refused(b, "metadata 'x.string' of 18446744073709551615 bytes does not fit");
  b = valid();
  b.pairs += le(70000, 8) + std::string(70000, 'k') + le(kUInt8, 4) + "x";
  ++b.pair_count;
  expect_refused(b, "metadata key of 70000 bytes is longer than the 65535 allowed");
  b = valid();
  b.tensor(std::string(65, 'n'), {4}, kF32, 64);
  expect_refused(b, "tensor name of 65 bytes is longer than the 64 allowed");
}

TEST_F(GgufHeaders, MetadataValues) {
  Builder b = valid();
  b.pair("x.type", 13, "");
  expect_refused(b, "metadata 'x.type' has unknown value type 13");
  b = valid();
  b.pair("x.array", kArray, le(13, 4) + le(1, 8));
  expect_refused(b, "metadata 'x.array': array of unknown value type 13");
  b = valid();
  b.pair("x.bool", kBool, "\x02");
  expect_refused(b, "metadata 'x.bool': bool value 2 is neither 0 nor 1");
  // Three levels of arrays read; a fourth is refused.
  std::string nested = le(kUInt8, 4) + le(1, 8) + "\x07";
  for (int depth = 0; depth < 2; ++depth) nested = le(kArray, 4) + le(1, 8) + nested;
  b = valid();
  b.pair("x.nested", kArray, nested);
  ft::testing::write_bytes(file_, b.bytes());
  EXPECT_EQ(ft::io::read_gguf_file(file_)
                .at("x.nested")
                .as_array()
                .items[0]
                .as_array()
                .items[0]
                .as_array()
                .items[0]
                .as_int(),
            7);
  b = valid();
  b.pair("x.nested", kArray, le(kArray, 4) + le(1, 8) + nested);
  expect_refused(b, "metadata 'x.nested': arrays nested deeper than 3");
  b = valid();
  b.pair("general.architecture", kString, str("llama"));
  expect_refused(b, "metadata key 'general.architecture' appears twice");
  b = valid();
  b.pair("", kUInt8, "x");
  expect_refused(b, "a metadata key is empty");
}

TEST_F(GgufHeaders, Alignment) {
  Builder b = valid();
  b.pair("general.alignment", kUInt32, le(48, 4));
  expect_refused(b, "general.alignment 48 is not a power of two");
  b = valid();
  b.pair("general.alignment", kUInt32, le(0, 4));
  expect_refused(b, "general.alignment 0 is not a power of two");
  b = valid();
  b.pair("general.alignment", kUInt8, "\x20");
  expect_refused(b, "general.alignment is a uint8, not a uint32");
  b = valid();
  b.pair("general.alignment", kUInt32, le(16, 4));
  b.alignment = 16;
  b.infos.clear();
  b.tensor_count = 0;
  b.tensor("a", {4}, kF32, 16);
  b.data_bytes = 32;
  ft::testing::write_bytes(file_, b.bytes());
  const auto gguf = ft::io::read_gguf_file(file_);
  EXPECT_EQ(gguf.alignment, 16u);
  EXPECT_EQ(gguf.tensors[0].offset, gguf.data_offset + 16);
}

TEST_F(GgufHeaders, TensorInfos) {
  Builder b = valid();
  b.tensor("c", {1, 1, 1, 1, 1}, kF32, 64);
  expect_refused(b, "tensor 'c' has 5 dimensions; GGUF allows 1 to 4");
  b = valid();
  b.tensor("c", {}, kF32, 64);
  expect_refused(b, "tensor 'c' has 0 dimensions");
  b = valid();
  b.tensor("c", {uint64_t{1} << 31}, kF32, 64);
  expect_refused(b, "tensor 'c': sizes [2147483648] hold one of 2^31 or more");
  b = valid();
  const uint64_t big = (uint64_t{1} << 31) - 1;
  b.tensor("c", {big, big, big, big}, kF64, 64);
  expect_refused(b,
                 "tensor 'c': sizes [2147483647, 2147483647, 2147483647, 2147483647] of F64 "
                 "need more than 2^64 bytes");
  b = valid();
  b.tensor("c", {33, 2}, kQ4_0, 64);
  expect_refused(b, "tensor 'c': row length 33 is not a multiple of Q4_0's block of 32 values");
  b = valid();
  b.tensor("c", {256}, 16, 64);
  expect_refused(b, "tensor 'c' has ggml type IQ2_XXS (16), which ft does not read");
  b = valid();
  b.tensor("c", {4}, 99, 64);
  expect_refused(b, "tensor 'c' has ggml type unknown (99), which ft does not read");
  b = valid();
  b.tensor("a", {4}, kF32, 64);
  expect_refused(b, "tensor 'a' appears twice");
  b = valid();
  b.tensor("", {4}, kF32, 64);
  expect_refused(b, "a tensor has an empty name");
}

TEST_F(GgufHeaders, TensorPlaces) {
  Builder b = valid();
  b.infos.clear();
  b.tensor_count = 0;
  b.tensor("a", {4}, kF32, 4);
  expect_refused(b, "tensor 'a': offset 4 is not a multiple of the alignment 32");
  b = valid();
  b.data_bytes = 47;
  expect_refused(b, "tensor 'b': its 16 bytes at offset 32 of the data section");
  b = valid();
  b.tensor("c", {4}, kF32, uint64_t{1} << 63);
  expect_refused(b, "end past the file's");
  b = valid();
  b.tensor("c", {8}, kF32, 0);
  expect_refused(b, "tensors 'a' (bytes");
  expect_refused(b, ") overlap");
  // The message names the byte where the faulty tensor's info starts: after the 24 bytes
  // of counts, the pair and the infos of a (8 + 1 + 4 + 8 + 4 + 8) and b (one more size).
  b = valid();
  b.tensor("c", {4}, 99, 64);
  const uint64_t c_at = 24 + b.pairs.size() + 33 + 41;
  expect_refused(b, "which ft does not read, at byte " + std::to_string(c_at));
}

}  // namespace

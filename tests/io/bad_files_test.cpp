// Weight files that are broken or hostile: each is refused with an error naming the file
// and the fault, never read out of bounds. The files are made by hand, byte by byte.
#include <gtest/gtest.h>

#include <zlib.h>  // defines: crc32

#include "ft/io/npz.h"
#include "ft/io/safetensors_file.h"
#include "ft/io/torch_checkpoint.h"
#include "io_test_util.h"

namespace mx = mlx::core;
using ft::testing::error_of;
using ft::testing::TempDir;

namespace {

using namespace std::string_literals;  // "...\x00..."s keeps the zero bytes

std::string le_bytes(uint64_t v, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return out;
}

std::string safetensors_bytes(const std::string& header, size_t data_bytes) {
  return le_bytes(header.size(), 8) + header + std::string(data_bytes, '\0');
}

// A zip archive of stored (uncompressed) entries, as torch.save and numpy.savez write.
std::string zip_bytes(const std::vector<std::pair<std::string, std::string>>& entries) {
  std::string out, directory;
  for (const auto& [name, data] : entries) {
    const uint32_t crc =
        crc32(0, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(data.size()));
    const uint64_t offset = out.size();
    out += le_bytes(0x04034b50, 4) + le_bytes(20, 2) + le_bytes(0, 2) + le_bytes(0, 2) +
           le_bytes(0, 4) + le_bytes(crc, 4) + le_bytes(data.size(), 4) + le_bytes(data.size(), 4) +
           le_bytes(name.size(), 2) + le_bytes(0, 2) + name + data;
    directory += le_bytes(0x02014b50, 4) + le_bytes(20, 2) + le_bytes(20, 2) + le_bytes(0, 2) +
                 le_bytes(0, 2) + le_bytes(0, 4) + le_bytes(crc, 4) + le_bytes(data.size(), 4) +
                 le_bytes(data.size(), 4) + le_bytes(name.size(), 2) + le_bytes(0, 2) +
                 le_bytes(0, 2) + le_bytes(0, 2) + le_bytes(0, 2) + le_bytes(0, 4) +
                 le_bytes(offset, 4) + name;
  }
  const uint64_t directory_offset = out.size();
  out += directory;
  out += le_bytes(0x06054b50, 4) + le_bytes(0, 2) + le_bytes(0, 2) + le_bytes(entries.size(), 2) +
         le_bytes(entries.size(), 2) + le_bytes(directory.size(), 4) +
         le_bytes(directory_offset, 4) + le_bytes(0, 2);
  return out;
}

std::string pickle_string(const std::string& s) {
  std::string out = "X";  // appended, not "X" + ..., which GCC 12 misreads (-Wrestrict)
  out += le_bytes(s.size(), 4);
  out += s;
  return out;
}

// A state dict {"w": float32 tensor of `size` and `stride` over storage "0" of 4 elements},
// pickled as torch.save does (protocol 2, _rebuild_tensor_v2).
std::string torch_checkpoint_bytes(const std::vector<int32_t>& size,
                                   const std::vector<int32_t>& stride) {
  auto int_tuple = [](const std::vector<int32_t>& values) {
    std::string out = "(";
    for (int32_t v : values) {
      out += 'J';
      out += le_bytes(static_cast<uint32_t>(v), 4);
    }
    return out + "t";
  };
  std::string pickle = "\x80\x02}" + pickle_string("w") + "ctorch._utils\n_rebuild_tensor_v2\n(" +
                       "(" + pickle_string("storage") + "ctorch\nFloatStorage\n" +
                       pickle_string("0") + pickle_string("cpu") + "K\x04tQK\x00"s +
                       int_tuple(size) + int_tuple(stride) + "\x89tRs.";
  return zip_bytes({{"archive/data.pkl", pickle}, {"archive/data/0", std::string(16, '\0')}});
}

}  // namespace

TEST(BadSafetensors, DuplicateTensorNamesAreRefused) {
  TempDir dir;
  const auto file = dir.path() / "twice.safetensors";
  ft::testing::write_bytes(
      file, safetensors_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                              R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                              8));
  EXPECT_EQ(error_of([&] { ft::io::load_safetensors_file(file, std::nullopt); }),
            "[safetensors] " + file.string() + ": the header names tensor 'a' twice");
}

TEST(BadSafetensors, OverlappingDataIsRefused) {
  TempDir dir;
  const auto file = dir.path() / "overlap.safetensors";
  const std::string header = R"({"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]},)"
                             R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})";
  ft::testing::write_bytes(file, safetensors_bytes(header, 12));
  const uint64_t start = 8 + header.size();
  EXPECT_EQ(error_of([&] { ft::io::load_safetensors_file(file, std::nullopt); }),
            "[safetensors] " + file.string() + ": tensors 'a' (bytes " + std::to_string(start) +
                ".." + std::to_string(start + 8) + ") and 'b' (bytes " + std::to_string(start + 4) +
                ".." + std::to_string(start + 12) + ") overlap");
}

// A number past double's range is nlohmann's out_of_range, not a parse_error (the fuzz
// target's input in fuzz/regressions/safetensors/).
TEST(BadSafetensors, NumberPastDoubleIsRefused) {
  const auto file =
      std::filesystem::path(FT_SOURCE_DIR) / "fuzz/regressions/safetensors/shape_1e999.safetensors";
  EXPECT_EQ(error_of([&] { ft::io::load_safetensors_file(file, std::nullopt); }),
            "[safetensors] " + file.string() +
                ": header is not valid JSON: [json.exception.out_of_range.406] number overflow "
                "parsing '1e999'");
}

// 2^31 - 1 cubed wraps a 64-bit byte count; the wrapped value must not pass for the range.
TEST(BadSafetensors, ShapeWhoseByteCountOverflows) {
  TempDir dir;
  const auto file = dir.path() / "huge.safetensors";
  ft::testing::write_bytes(file, safetensors_bytes(R"({"a":{"dtype":"U8","shape":)"
                                                   R"([2147483647,2147483647,2147483647,8],)"
                                                   R"("data_offsets":[0,0]}})",
                                                   0));
  EXPECT_EQ(error_of([&] { ft::io::load_safetensors_file(file, std::nullopt); }),
            "[safetensors] " + file.string() +
                ": tensor 'a': shape [2147483647,2147483647,2147483647,8] of U8 needs more than "
                "2^64 bytes");
}

TEST(BadTorchCheckpoint, HandMadeCheckpointLoads) {
  TempDir dir;
  const auto file = dir.path() / "pytorch_model.bin";
  ft::testing::write_bytes(file, torch_checkpoint_bytes({2, 2}, {1, 2}));
  const auto weights = ft::io::load_torch_checkpoint(file, std::nullopt);
  EXPECT_EQ(weights.at("w").shape(), (mx::Shape{2, 2}));
}

// A zero-stride view of 2^32 elements over 4 used to wrap MLX's 32-bit sizes and crash.
TEST(BadTorchCheckpoint, ZeroStrideViewLargerThanItsStorage) {
  TempDir dir;
  const auto file = dir.path() / "pytorch_model.bin";
  ft::testing::write_bytes(file, torch_checkpoint_bytes({65536, 65536}, {0, 0}));
  EXPECT_EQ(error_of([&] { ft::io::load_torch_checkpoint(file, std::nullopt); }),
            "[pytorch] " + file.string() +
                ": tensor 'w': view of shape (65536, 65536) has more elements than its "
                "storage's 4");
}

TEST(BadTorchCheckpoint, ViewReachingPastItsStorage) {
  TempDir dir;
  const auto file = dir.path() / "pytorch_model.bin";
  ft::testing::write_bytes(file, torch_checkpoint_bytes({2}, {2147483647}));
  EXPECT_EQ(error_of([&] { ft::io::load_torch_checkpoint(file, std::nullopt); }),
            "[pytorch] " + file.string() +
                ": tensor 'w': view of shape (2) reaches past the end of its storage of 4 "
                "elements");
}

// A list appended to itself through the memo: refused at the end (not a state dict),
// and freed without leaking the cycle.
TEST(BadTorchCheckpoint, SelfContainingListIsFreed) {
  TempDir dir;
  const auto file = dir.path() / "pytorch_model.bin";
  ft::testing::write_bytes(file, zip_bytes({{"archive/data.pkl",
                                             "\x80\x02]q\x00h\x00"
                                             "a."s}}));
  EXPECT_EQ(error_of([&] { ft::io::load_torch_checkpoint(file, std::nullopt); }),
            "[pytorch] " + file.string() + ": the pickle is not a state dict");
}

TEST(BadNpz, ShapeSizesBeyondMlx) {
  TempDir dir;
  const auto file = dir.path() / "weights.npz";
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 1), }";
  const std::string npy = std::string("\x93NUMPY\x01\x00", 8) + le_bytes(header.size(), 2) + header;
  ft::testing::write_bytes(file, zip_bytes({{"w.npy", npy}}));
  EXPECT_EQ(
      error_of([&] { ft::io::load_npz(file, std::nullopt); }),
      "[npz] " + file.string() + ": array 'w': shape (99999999999, 1) has a size of 2^31 or more");
}

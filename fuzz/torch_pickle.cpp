// The pickle of a pytorch_model.bin (data.pkl): opcodes, the globals it may name, the
// persistent ids of storages and the tensor views over them. The input is the pickle; it
// is stored in a zip archive next to one storage of 16 float32 elements ("0").
#include <zlib.h>  // defines: crc32

#include "ft/io/torch_checkpoint.h"
#include "fuzz/fuzz_target.h"

namespace {

std::string le(uint64_t v, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out.push_back(i < 8 ? static_cast<char>((v >> (8 * i)) & 0xff) : 0);
  return out;
}

std::string stored_zip(const std::vector<std::pair<std::string, std::string>>& entries) {
  std::string out, directory;
  for (const auto& [name, body] : entries) {
    const uint64_t crc =
        crc32(0, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size()));
    const uint64_t offset = out.size();
    std::string sizes = le(crc, 4);
    sizes += le(body.size(), 4);
    sizes += le(body.size(), 4);
    sizes += le(name.size(), 2);
    out += le(0x04034b50, 4) + le(20, 2) + le(0, 8) + sizes + le(0, 2) + name + body;
    directory += le(0x02014b50, 4) + le(20, 2) + le(20, 2) + le(0, 8) + sizes + le(0, 12) +
                 le(offset, 4) + name;
  }
  const uint64_t directory_offset = out.size();
  out += directory;
  out += le(0x06054b50, 4) + le(0, 4) + le(entries.size(), 2) + le(entries.size(), 2) +
         le(directory.size(), 4) + le(directory_offset, 4) + le(0, 2);
  return out;
}

}  // namespace

FT_FUZZ_TARGET(torch_pickle) {
  const std::string archive =
      stored_zip({{"archive/data.pkl", std::string(ft::fuzz::bytes(data, size))},
                  {"archive/data/0", std::string(64, '\x01')}});
  const auto file = ft::fuzz::write_temp(archive, "pytorch_model.bin");
  return ft::fuzz::refusing([&] { ft::io::load_torch_checkpoint(file, std::nullopt); });
}

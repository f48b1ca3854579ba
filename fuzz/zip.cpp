// A zip archive: the end record (and zip64's), the central directory, local headers, and
// each entry read back, stored or deflated.
#include "ft/io/zip_reader.h"
#include "fuzz/fuzz_target.h"

FT_FUZZ_TARGET(zip) {
  const auto file = ft::fuzz::write_temp(ft::fuzz::bytes(data, size), "archive.zip");
  return ft::fuzz::refusing([&] {
    ft::io::ZipReader zip(file);
    for (const auto& entry : zip.entries()) ft::fuzz::refusing([&] { zip.read(entry); });
  });
}

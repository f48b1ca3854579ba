#include "ft/io/safetensors_file.h"

#include <algorithm>
#include <fstream>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "ft/core/error.h"
#include "ft/io/tensor_bytes.h"

namespace ft::io {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kPlace = "safetensors";

std::string quoted(const std::string& name) {
  return "'" + name + "'";
}

SafetensorsEntry parse_entry(const fs::path& file, const std::string& name, const json& info,
                             uint64_t data_start, uint64_t file_size) {
  const std::string where = file.string() + ": tensor " + quoted(name);
  FT_CHECK(info.is_object(), kPlace, where, ": header entry is not an object");
  FT_CHECK(info.contains("dtype") && info["dtype"].is_string(), kPlace, where,
           ": header entry has no dtype string");
  FT_CHECK(info.contains("shape") && info["shape"].is_array(), kPlace, where,
           ": header entry has no shape list");
  FT_CHECK(info.contains("data_offsets") && info["data_offsets"].is_array() &&
               info["data_offsets"].size() == 2 && info["data_offsets"][0].is_number_unsigned() &&
               info["data_offsets"][1].is_number_unsigned(),
           kPlace, where, ": header entry needs data_offsets [begin, end]");
  SafetensorsEntry e;
  e.name = name;
  const std::string dtype_name = info["dtype"].get<std::string>();
  auto dtype = detail::dtype_from_safetensors_name(dtype_name);
  FT_CHECK(dtype.has_value(), kPlace, where, ": unsupported dtype '", dtype_name, "'");
  e.dtype = *dtype;
  // The byte count is computed without overflow: a wrapped product could match a
  // small data range and describe an array larger than the file.
  uint64_t bytes = mx::size_of(e.dtype);
  bool too_large = false;
  for (const auto& d : info["shape"]) {
    FT_CHECK(d.is_number_unsigned() && d.get<uint64_t>() < (uint64_t{1} << 31), kPlace, where,
             ": shape ", info["shape"].dump().substr(0, 200),
             " is not a list of non-negative sizes below 2^31");
    e.shape.push_back(d.get<int32_t>());
    too_large = too_large || __builtin_mul_overflow(bytes, d.get<uint64_t>(), &bytes);
  }
  const uint64_t begin = info["data_offsets"][0].get<uint64_t>();
  const uint64_t end = info["data_offsets"][1].get<uint64_t>();
  FT_CHECK(begin <= end, kPlace, where, ": data_offsets [", begin, ", ", end, "] are reversed");
  FT_CHECK(!too_large, kPlace, where, ": shape ", info["shape"].dump().substr(0, 200), " of ",
           dtype_name, " needs more than 2^64 bytes");
  FT_CHECK(end - begin == bytes, kPlace, where, ": holds ", end - begin, " bytes but shape ",
           info["shape"].dump().substr(0, 200), " of ", dtype_name, " needs ", bytes);
  FT_CHECK(end <= file_size - data_start, kPlace, where, ": ends at byte ", data_start + end,
           " but the file has ", file_size, " (truncated?)");
  e.begin = data_start + begin;
  e.end = data_start + end;
  return e;
}

// Two tensors may not share bytes: a writer that did so is broken, and a reader that
// accepted it would load one tensor's data as another's.
void check_no_overlaps(const fs::path& file, std::vector<SafetensorsEntry> entries) {
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const SafetensorsEntry* previous = nullptr;
  for (const auto& e : entries) {
    if (e.begin == e.end) continue;  // an empty tensor holds no bytes
    FT_CHECK(!previous || previous->end <= e.begin, kPlace, file.string(), ": tensors ",
             quoted(previous->name), " (bytes ", previous->begin, "..", previous->end, ") and ",
             quoted(e.name), " (bytes ", e.begin, "..", e.end, ") overlap");
    previous = &e;
  }
}

}  // namespace

SafetensorsHeader read_safetensors_header(const fs::path& file) {
  std::error_code ec;
  FT_CHECK(fs::is_regular_file(file, ec), kPlace, file.string(), ": no such file");
  const uint64_t file_size = fs::file_size(file, ec);
  FT_CHECK(!ec, kPlace, file.string(), ": cannot read its size: ", ec.message());
  std::ifstream in(file, std::ios::binary);
  FT_CHECK(in, kPlace, file.string(), ": cannot open");
  FT_CHECK(file_size >= 8, kPlace, file.string(), ": ", file_size,
           " bytes, too short for a safetensors header (truncated?)");
  unsigned char len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  FT_CHECK(header_len <= file_size - 8, kPlace, file.string(), ": header of ", header_len,
           " bytes does not fit in the file's ", file_size,
           " bytes (truncated or not safetensors?)");
  std::string text(header_len, '\0');
  in.read(text.data(), static_cast<std::streamsize>(header_len));
  FT_CHECK(in, kPlace, file.string(), ": cannot read the header");
  return parse_safetensors_header(file, text, file_size);
}

SafetensorsHeader parse_safetensors_header(const fs::path& file, std::string_view text,
                                           uint64_t file_size) {
  // JSON keeps the last of two equal keys; the names are checked while parsing, so a
  // file naming a tensor twice is refused instead of losing one silently.
  const std::string* duplicate = nullptr;
  std::unordered_set<std::string> names;
  auto note_names = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth == 1 && event == json::parse_event_t::key && !duplicate) {
      auto [it, fresh] = names.insert(parsed.get<std::string>());
      if (!fresh) duplicate = &*it;
    }
    return true;
  };
  json header;
  try {
    header = json::parse(text, note_names);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1e999
    throw Error(kPlace, file.string() + ": header is not valid JSON: " + e.what());
  }
  FT_CHECK(!duplicate, kPlace, file.string(), ": the header names tensor ",
           duplicate ? quoted(*duplicate) : "", " twice");
  FT_CHECK(header.is_object(), kPlace, file.string(), ": header is not a JSON object");

  SafetensorsHeader out;
  const uint64_t data_start = 8 + text.size();
  FT_CHECK(data_start <= file_size, kPlace, file.string(), ": header of ", text.size(),
           " bytes does not fit in the file's ", file_size, " bytes");
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") {
      if (info.is_null()) continue;  // MLX writes null when there is no metadata
      FT_CHECK(info.is_object(), kPlace, file.string(), ": __metadata__ is not an object");
      for (const auto& [k, v] : info.items()) {
        FT_CHECK(v.is_string(), kPlace, file.string(), ": __metadata__ value '", k,
                 "' is not a string");
        out.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    out.tensors.push_back(parse_entry(file, name, info, data_start, file_size));
  }
  check_no_overlaps(file, out.tensors);
  std::sort(out.tensors.begin(), out.tensors.end(),
            [](const auto& a, const auto& b) { return natural_less(a.name, b.name); });
  return out;
}

ParamMap load_safetensors_file(const fs::path& file, std::optional<mx::Dtype> dtype,
                               const std::unordered_set<std::string>* only) {
  const SafetensorsHeader header = read_safetensors_header(file);
  std::ifstream in(file, std::ios::binary);
  FT_CHECK(in, kPlace, file.string(), ": cannot open");
  ParamMap out;
  std::vector<char> bytes;
  for (const auto& e : header.tensors) {
    if (only && !only->count(e.name)) continue;
    bytes.resize(e.end - e.begin);
    in.seekg(static_cast<std::streamoff>(e.begin));
    in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    FT_CHECK(in, kPlace, file.string(), ": tensor ", quoted(e.name), ": cannot read bytes ",
             e.begin, "..", e.end);
    out.set(e.name,
            detail::finish_tensor(
                detail::array_from_bytes(bytes.data(), bytes.size(), e.shape, e.dtype), dtype));
  }
  return out;
}

}  // namespace ft::io

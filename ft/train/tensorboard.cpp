#include "ft/train/tensorboard.h"

#include <unistd.h>  // defines: gethostname, getpid

#include <array>
#include <chrono>
#include <cstring>

#include "ft/core/error.h"

// Note [TensorBoard event files]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// An event file is a TFRecord stream: each record is its length (u64, little-endian), the
// masked CRC-32C of those 8 bytes (u32), the bytes of one serialized `Event` protocol
// buffer, and their masked CRC-32C; a masked CRC is ((crc >> 15) | (crc << 17)) +
// 0xa282ead8. The first event carries file_version "brain.Event:2". A scalar is an Event
// with wall_time (field 1, double), step (2, varint) and summary (5), a Summary holding one
// Value (1) with tag (1, string) and simple_value (2, float). ft writes these few fields by
// hand in protocol buffer wire format: a key (field << 3 | wire type) then a varint, 8 or
// 4 little-endian bytes, or a length-prefixed body.

namespace ft::train {

namespace fs = std::filesystem;

namespace {

constexpr const char* kPlace = "tensorboard";

const std::array<uint32_t, 256>& crc_table() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0x82F63B78u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  return table;
}

uint32_t masked_crc(std::string_view bytes) {
  const uint32_t crc = crc32c(bytes);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out += char((v & 0x7F) | 0x80);
    v >>= 7;
  }
  out += char(v);
}

template <typename T>
void put_fixed(std::string& out, T v) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &v, sizeof(T));  // little-endian hosts only, as MLX's
  out.append(bytes, sizeof(T));
}

void put_bytes(std::string& out, int field, std::string_view bytes) {
  put_varint(out, uint64_t(field) << 3 | 2);
  put_varint(out, bytes.size());
  out.append(bytes);
}

// An Event with its wall_time and step, and `rest` (already encoded fields) after them.
std::string event(double wall_time, int64_t step, const std::string& rest) {
  std::string e;
  put_varint(e, 1 << 3 | 1);
  put_fixed(e, wall_time);
  put_varint(e, 2 << 3 | 0);
  put_varint(e, uint64_t(step));
  return e + rest;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

uint32_t crc32c(std::string_view bytes) {
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : bytes) c = crc_table()[(c ^ b) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

TensorBoardWriter::TensorBoardWriter(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  FT_CHECK(!ec, kPlace, dir.string(), ": cannot create the folder: ", ec.message());
  char host[256] = "localhost";
  ::gethostname(host, sizeof host - 1);
  const double now = now_seconds();
  file_ = dir / ("events.out.tfevents." + std::to_string(int64_t(now)) + "." + host + "." +
                 std::to_string(::getpid()) + ".ft");
  out_.open(file_, std::ios::binary | std::ios::app);
  FT_CHECK(out_, kPlace, file_.string(), ": cannot open for writing");
  std::string version;
  put_bytes(version, 3, "brain.Event:2");
  record(event(now, 0, version));
}

void TensorBoardWriter::record(const std::string& data) {
  std::string length;
  put_fixed(length, uint64_t(data.size()));
  std::string frame = length;
  put_fixed(frame, masked_crc(length));
  frame += data;
  put_fixed(frame, masked_crc(data));
  out_.write(frame.data(), std::streamsize(frame.size()));
  out_.flush();
  FT_CHECK(out_, kPlace, file_.string(), ": write failed");
}

void TensorBoardWriter::scalar(std::string_view tag, float value, int64_t step, double wall_time) {
  std::string v;
  put_bytes(v, 1, tag);
  put_varint(v, 2 << 3 | 5);
  put_fixed(v, value);
  std::string summary;
  put_bytes(summary, 1, v);
  std::string rest;
  put_bytes(rest, 5, summary);
  record(event(wall_time, step, rest));
}

void TensorBoardSink::on_event(const TrainEvent& e) {
  const double now = now_seconds();
  if (e.kind == TrainEvent::Kind::step) {
    const StepRecord& r = e.record;
    writer_.scalar("train/loss", r.loss, r.step, now);
    writer_.scalar("train/learning_rate", r.learning_rate, r.step, now);
    writer_.scalar("train/grad_norm", r.grad_norm, r.step, now);
    writer_.scalar("train/tokens_per_second", float(r.tokens_per_second), r.step, now);
    writer_.scalar("train/peak_memory_gib", float(double(e.peak_memory) / (1 << 30)), r.step, now);
  } else if (e.kind == TrainEvent::Kind::evaluation) {
    writer_.scalar("val/loss", float(e.eval.loss), e.eval.step, now);
    writer_.scalar("val/perplexity", float(e.eval.perplexity), e.eval.step, now);
    writer_.scalar("val/accuracy", float(e.eval.accuracy), e.eval.step, now);
  }
}

}  // namespace ft::train

// The event sinks: TensorBoard's record framing and scalars read back byte by byte, and
// the console's two styles. tests/golden/check_tensorboard.py reads ft's event files with
// the tensorboard package itself.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "ft/train/event_sinks.h"
#include "ft/train/tensorboard.h"

namespace fs = std::filesystem;
using ft::train::TrainEvent;

namespace {

fs::path fresh(const std::string& name) {
  const fs::path dir =
      fs::temp_directory_path() / ("ft_sinks_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(dir);
  return dir;
}

uint64_t varint(const std::string& s, size_t& i) {
  uint64_t v = 0;
  for (int shift = 0;; shift += 7) {
    const auto b = static_cast<unsigned char>(s.at(i++));
    v |= uint64_t(b & 0x7F) << shift;
    if (!(b & 0x80)) return v;
  }
}

template <typename T>
T fixed(const std::string& s, size_t& i) {
  T v;
  std::memcpy(&v, s.data() + i, sizeof(T));
  i += sizeof(T);
  return v;
}

uint32_t masked(uint32_t crc) {
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

// A scalar decoded from an Event's bytes: step, tag, value (tag empty for other events).
struct Scalar {
  int64_t step = -1;
  std::string tag;
  float value = 0;
  std::string file_version;
};

Scalar decode_event(const std::string& e) {
  Scalar out;
  size_t i = 0;
  while (i < e.size()) {
    const uint64_t key = varint(e, i);
    const int field = int(key >> 3), type = int(key & 7);
    if (type == 1) {
      fixed<double>(e, i);  // wall_time
    } else if (type == 0) {
      const uint64_t v = varint(e, i);
      if (field == 2) out.step = int64_t(v);
    } else if (type == 2) {
      const std::string body = e.substr(i, varint(e, i));
      i += body.size();
      if (field == 3) out.file_version = body;
      if (field == 5) {  // Summary { Value value = 1 { tag = 1, simple_value = 2 } }
        size_t j = 0;
        varint(body, j);
        const std::string value = body.substr(j, varint(body, j));
        size_t k = 0;
        while (k < value.size()) {
          const uint64_t vkey = varint(value, k);
          if ((vkey & 7) == 2) {
            const size_t n = varint(value, k);
            out.tag = value.substr(k, n);
            k += n;
          } else {
            out.value = fixed<float>(value, k);
          }
        }
      }
    } else {
      ADD_FAILURE() << "unexpected wire type " << type;
      return out;
    }
  }
  return out;
}

}  // namespace

TEST(TensorBoard, Crc32cIsCastagnolis) {
  EXPECT_EQ(ft::train::crc32c("123456789"), 0xE3069283u);  // the standard check value
  EXPECT_EQ(ft::train::crc32c(""), 0u);
}

TEST(TensorBoard, EventFilesHoldFramedScalars) {
  const fs::path dir = fresh("tb");
  ft::train::TensorBoardSink sink(dir);
  TrainEvent step;
  step.kind = TrainEvent::Kind::step;
  step.record.step = 3;
  step.record.loss = 1.25f;
  step.record.learning_rate = 2e-4f;
  sink.on_event(step);
  TrainEvent eval;
  eval.kind = TrainEvent::Kind::evaluation;
  eval.eval.step = 3;
  eval.eval.loss = 0.5;
  sink.on_event(eval);

  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path());
  ASSERT_EQ(files.size(), 1u);
  EXPECT_NE(files[0].filename().string().find("events.out.tfevents."), std::string::npos);
  std::ifstream in(files[0], std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), {});
  std::vector<Scalar> scalars;
  size_t i = 0;
  while (i < bytes.size()) {
    const std::string length = bytes.substr(i, 8);
    const uint64_t n = fixed<uint64_t>(bytes, i);
    EXPECT_EQ(fixed<uint32_t>(bytes, i), masked(ft::train::crc32c(length)));
    const std::string data = bytes.substr(i, n);
    i += n;
    EXPECT_EQ(fixed<uint32_t>(bytes, i), masked(ft::train::crc32c(data)));
    scalars.push_back(decode_event(data));
  }
  ASSERT_EQ(scalars.size(), 1u + 5 + 3);
  EXPECT_EQ(scalars[0].file_version, "brain.Event:2");
  EXPECT_EQ(scalars[1].tag, "train/loss");
  EXPECT_EQ(scalars[1].step, 3);
  EXPECT_EQ(scalars[1].value, 1.25f);
  EXPECT_EQ(scalars[2].tag, "train/learning_rate");
  EXPECT_EQ(scalars[2].value, 2e-4f);
  EXPECT_EQ(scalars[6].tag, "val/loss");
  EXPECT_EQ(scalars[6].value, 0.5f);
  fs::remove_all(dir);
}

namespace {

// What fn wrote to stderr.
template <typename Fn>
std::string stderr_of(Fn fn) {
  const fs::path file = fresh("stderr.txt");
  std::fflush(stderr);
  const int saved = ::dup(2);
  FILE* f = std::fopen(file.c_str(), "w");
  ::dup2(::fileno(f), 2);
  fn();
  std::fflush(stderr);
  ::dup2(saved, 2);
  ::close(saved);
  std::fclose(f);
  std::ifstream in(file);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

TrainEvent step_event(int64_t step, int64_t total) {
  TrainEvent e;
  e.kind = TrainEvent::Kind::step;
  e.step = step;
  e.total_steps = total;
  e.record.step = step;
  e.record.loss = 2.5f;
  e.record.learning_rate = 1e-4f;
  e.record.tokens_per_second = 1000;
  e.elapsed_seconds = 65;
  e.eta_seconds = 3725;
  e.peak_memory = uint64_t(3) << 30;
  return e;
}

}  // namespace

TEST(ConsoleSink, TheBarOwnsItsLineAndEvaluationsPrintAboveIt) {
  const std::string out = stderr_of([] {
    ft::train::ConsoleSink sink(ft::train::ConsoleSink::Style::bar);
    sink.on_event(step_event(5, 10));
    TrainEvent eval;
    eval.kind = TrainEvent::Kind::evaluation;
    eval.eval.step = 5;
    eval.eval.loss = 1.5;
    sink.on_event(eval);
    TrainEvent done;
    done.kind = TrainEvent::Kind::finished;
    sink.on_event(done);
  });
  const std::string bar =
      "[############............] 5/10  loss 2.5000  lr 1.00e-04  1000 tok/s  1:05 elapsed, "
      "ETA 1:02:05  3.0 GiB";
  EXPECT_EQ(out, "\r\033[K" + bar +
                     "\r\033[Keval      5  val loss 1.5000  ppl 0.00  accuracy 0.000\n" + bar +
                     "\n");
}

TEST(ConsoleSink, PlainLinesAboutEveryTwentiethStep) {
  ::testing::internal::CaptureStdout();
  ft::train::ConsoleSink sink(ft::train::ConsoleSink::Style::lines);
  for (int64_t s = 1; s <= 40; ++s) sink.on_event(step_event(s, 40));
  const std::string out = ::testing::internal::GetCapturedStdout();
  size_t lines = 0;
  for (char c : out) lines += c == '\n';
  EXPECT_EQ(lines, 21u);  // step 1 and every second step
  EXPECT_EQ(out.substr(0, out.find('\n')),
            "step     1/40  loss 2.5000  lr 1.00e-04  grad 0.000  1000 tok/s");
}

TEST(ConsoleSink, DurationsReadAsClocks) {
  EXPECT_EQ(ft::train::format_duration(0), "0:00");
  EXPECT_EQ(ft::train::format_duration(727), "12:07");
  EXPECT_EQ(ft::train::format_duration(3909), "1:05:09");
}

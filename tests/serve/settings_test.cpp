// What POST /api/v1/jobs asks for, as ft train's settings: the TypeScript client's shape and
// ft's keys, and every path confined to the roots (no `..` or link escape).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "ft/serve/job.h"
#include "ft/serve/job_settings.h"

namespace ft::serve {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class JobSettings : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = fs::path(::testing::TempDir()) / ("ft_serve_settings_" + std::to_string(getpid()));
    fs::remove_all(base_);
    fs::create_directories(base_ / "root" / "model");
    fs::create_directories(base_ / "root" / "data");
    fs::create_directories(base_ / "outside");
    std::ofstream(base_ / "root" / "data" / "train.jsonl") << "{}\n";
    std::ofstream(base_ / "outside" / "secret.jsonl") << "{}\n";
    fs::create_directory_symlink(base_ / "outside", base_ / "root" / "link");
    roots_.emplace(std::vector<fs::path>{base_ / "root"});
  }
  void TearDown() override { fs::remove_all(base_); }

  // The HTTP status parse_job_request refuses body with, or 0 when it accepts it.
  int refusal(const json& body) {
    try {
      parse_job_request(body, *roots_);
    } catch (const ApiError& e) {
      return e.http_status();
    }
    return 0;
  }
  fs::path root() const { return fs::canonical(base_ / "root"); }

  fs::path base_;
  std::optional<Roots> roots_;
};

TEST_F(JobSettings, ClientShapeBecomesFtKeys) {
  const json body = {
      {"name", "addition"},
      {"baseModel", "model"},
      {"dataset",
       {{"trainingData", "data/train.jsonl"},
        {"validationData", "data/train.jsonl"},
        {"format", "completion"}}},
      {"parameters",
       {{"learningRate", 2e-4},
        {"batchSize", 4},
        {"epochs", 2},
        {"sequenceLength", 256},
        {"loraRank", 8},
        {"loraAlpha", 16}}},
      {"optimization", {{"gradientCheckpointing", true}, {"mixedPrecision", "bf16"}}},
      {"export", {{"format", "gguf"}, {"type", "q4_0"}}}};
  const JobRequest r = parse_job_request(body, *roots_);
  EXPECT_EQ(r.name, "addition");
  EXPECT_EQ(r.train["model"], (root() / "model").string());
  EXPECT_EQ(r.train["data"], json::array({(root() / "data/train.jsonl").string()}));
  EXPECT_EQ(r.train["valid-data"], (root() / "data/train.jsonl").string());
  EXPECT_EQ(r.train["format"], "completions");
  EXPECT_DOUBLE_EQ(r.train["learning-rate"].get<double>(), 2e-4);
  EXPECT_EQ(r.train["batch-size"], 4);
  EXPECT_EQ(r.train["epochs"], 2);
  EXPECT_EQ(r.train["max-seq-length"], 256);
  EXPECT_EQ(r.train["lora-rank"], 8);
  EXPECT_EQ(r.train["lora-alpha"], 16);
  EXPECT_EQ(r.train["grad-checkpoint"], true);
  EXPECT_EQ(r.train["dtype"], "bfloat16");
  EXPECT_EQ(r.exported, (json{{"format", "gguf"}, {"type", "q4_0"}}));
  EXPECT_EQ(r.train.size(), 12u) << r.train.dump();
}

TEST_F(JobSettings, FtKeysKeepTheirValuesWithDashes) {
  const JobRequest r = parse_job_request(
      {{"model", "model"}, {"data", "data:2"}, {"lora_rank", 4}, {"eval-every", 10}}, *roots_);
  EXPECT_EQ(r.train["lora-rank"], 4);
  EXPECT_EQ(r.train["eval-every"], 10);
  EXPECT_FALSE(r.train.contains("lora_rank"));
  // A mixture's weight stays with its confined path.
  EXPECT_EQ(r.train["data"], json::array({(root() / "data").string() + ":2"}));
  EXPECT_TRUE(r.exported.is_null());
}

TEST_F(JobSettings, HubIdsAreModelsNotPaths) {
  const JobRequest r =
      parse_job_request({{"model", "HuggingFaceTB/SmolLM2-135M@main"}, {"data", "data"}}, *roots_);
  EXPECT_EQ(r.train["model"], "HuggingFaceTB/SmolLM2-135M@main");
}

TEST_F(JobSettings, PathsOutsideTheRootsAreForbidden) {
  EXPECT_EQ(refusal({{"model", "/etc"}, {"data", "data"}}), 403);
  EXPECT_EQ(refusal({{"model", "model"}, {"data", "../outside/secret.jsonl"}}), 403);
  EXPECT_EQ(refusal({{"model", "model"}, {"data", "data/../../outside"}}), 403);
  EXPECT_EQ(refusal({{"model", "model"}, {"data", "link/secret.jsonl"}}), 403);  // a link out
  EXPECT_EQ(refusal({{"model", "model"}, {"data", "data"}, {"valid-data", "/etc/passwd"}}), 403);
  EXPECT_EQ(refusal({{"model", "model"}, {"data", "data"}, {"teacher", "../outside"}}), 403);
  EXPECT_EQ(refusal({{"model", "model"}, {"data", "data"}, {"template", "../x.jinja"}}), 403);
  EXPECT_EQ(refusal({{"model", "model"}, {"data", "data"}, {"template", "chatml"}}), 0);
  // `..` that stays inside is fine.
  EXPECT_EQ(refusal({{"model", "data/../model"}, {"data", "data"}}), 0);
}

TEST_F(JobSettings, MalformedBodiesAreBadRequests) {
  EXPECT_EQ(refusal(json::array()), 400);
  EXPECT_EQ(refusal({{"data", "data"}}), 400);                 // no model
  EXPECT_EQ(refusal({{"model", "model"}}), 400);               // no data
  EXPECT_EQ(refusal({{"model", "model"}, {"data", 3}}), 400);  // not a path
  EXPECT_EQ(refusal({{"model", "model"}, {"data", "data"}, {"output-dir", "x"}}), 400);
  EXPECT_EQ(refusal({{"model", "model"}, {"data", "data"}, {"overwrite", true}}), 400);
  EXPECT_EQ(refusal({{"model", "model"}, {"data", "data"}, {"export", {{"format", "onnx"}}}}), 400);
  EXPECT_EQ(refusal({{"baseModel", "model"}}), 400);  // no dataset
  EXPECT_EQ(
      refusal({{"baseModel", "model"}, {"dataset", {{"trainingData", "data"}, {"format", "xml"}}}}),
      400);
  EXPECT_EQ(refusal({{"baseModel", "model"},
                     {"dataset", {{"trainingData", "data"}}},
                     {"parameters", {{"learningRate", "fast"}}}}),
            400);
  EXPECT_EQ(refusal({{"baseModel", "model"}, {"dataset", {{"trainingData", "data"}}}, {"x", 1}}),
            400);
  EXPECT_EQ(refusal({{"baseModel", "model"},
                     {"dataset", {{"trainingData", "data"}}},
                     {"optimization", {{"mixedPrecision", "int8"}}}}),
            400);
}

// Found by reading parse_job_request, kept by fuzz/regressions/job_request/: an export
// format of another type was nlohmann's type_error, not the server's 400.
TEST_F(JobSettings, ExportFormatOfAnotherTypeIsABadRequest) {
  for (const json& format : {json(1), json(nullptr), json::array({"gguf"})}) {
    try {
      parse_job_request({{"model", "model"}, {"data", "data"}, {"export", {{"format", format}}}},
                        *roots_);
      ADD_FAILURE() << "accepted " << format;
    } catch (const ApiError& e) {
      EXPECT_EQ(e.http_status(), 400);
      EXPECT_STREQ(e.what(), "[serve] \"export\" must be {\"format\": \"gguf\", \"type\": TYPE}");
    }
  }
}

}  // namespace
}  // namespace ft::serve

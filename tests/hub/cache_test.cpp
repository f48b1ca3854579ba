// Hugging Face repository ids and the cache layout huggingface_hub writes (Note [Hugging
// Face cache]): a cache built here the way huggingface_hub builds it (refs, snapshots of
// symbolic links into blobs), a model opened from it by id, and the errors for what it does
// not hold.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <unistd.h>

#include "ft/core/error.h"
#include "ft/hub/cache.h"
#include "ft/models/registry.h"
#include "tests/test_util.h"

namespace {

namespace fs = std::filesystem;
using ft::hub::parse_repo_id;

const std::string kCommit = "0123456789abcdef0123456789abcdef01234567";
const std::string kOther = "fedcba9876543210fedcba9876543210fedcba98";

// A cache under the test's temp folder, set as $HF_HUB_CACHE for the test's duration.
class HubCache : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) / ("ft_hub_" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
    const char* old = std::getenv("HF_HUB_CACHE");
    if (old) old_ = old;
    ::setenv("HF_HUB_CACHE", root_.c_str(), 1);
  }
  void TearDown() override {
    if (old_)
      ::setenv("HF_HUB_CACHE", old_->c_str(), 1);
    else
      ::unsetenv("HF_HUB_CACHE");
    fs::remove_all(root_);
  }

  // models--ORG--NAME with the files of `source` at `commit` (each a link into blobs/),
  // and refs/`ref` pointing there.
  fs::path add(const std::string& folder, const fs::path& source, const std::string& commit,
               const std::string& ref) {
    const fs::path repo = root_ / folder;
    const fs::path snapshot = repo / "snapshots" / commit;
    fs::create_directories(snapshot);
    fs::create_directories(repo / "blobs");
    for (const auto& entry : fs::directory_iterator(source)) {
      const std::string blob =
          "blob-" + commit.substr(0, 6) + "-" + entry.path().filename().string();
      fs::copy_file(entry.path(), repo / "blobs" / blob, fs::copy_options::overwrite_existing);
      fs::create_symlink(fs::path("..") / ".." / "blobs" / blob,
                         snapshot / entry.path().filename());
    }
    fs::create_directories(repo / "refs" / fs::path(ref).parent_path());
    std::ofstream(repo / "refs" / ref) << commit;
    return snapshot;
  }

  fs::path root_;
  std::optional<std::string> old_;
};

const fs::path kLlama = fs::path(FT_TEST_DATA) / "models" / "llama";

}  // namespace

TEST(RepoId, FollowsTheHubsNamingRules) {
  auto id = parse_repo_id("HuggingFaceTB/SmolLM2-135M-Instruct");
  ASSERT_TRUE(id.has_value());
  EXPECT_EQ(id->repo, "HuggingFaceTB/SmolLM2-135M-Instruct");
  EXPECT_EQ(id->revision, "main");
  id = parse_repo_id("mlx-community/Qwen2.5-0.5B-Instruct-4bit@refs/pr/3");
  ASSERT_TRUE(id.has_value());
  EXPECT_EQ(id->revision, "refs/pr/3");
  EXPECT_EQ(parse_repo_id("org/name@" + kCommit)->revision, kCommit);
  for (const std::string& bad :
       std::vector<std::string>{"gpt2", "a/b/c", "/name", "org/", "org/na me", "org/-name",
                                "org/name.", "org/na--me", "org/na..me", "org/name@",
                                "org/name@a..b", "models/llama/", std::string(100, 'a') + "/b"})
    EXPECT_FALSE(parse_repo_id(bad).has_value()) << bad;
}

TEST(RepoId, CacheFolderAsHuggingfaceHubFindsIt) {
  const char* old_cache = std::getenv("HF_HUB_CACHE");
  const char* old_home = std::getenv("HF_HOME");
  const std::string saved_cache = old_cache ? old_cache : "", saved_home = old_home ? old_home : "";
  ::setenv("HF_HUB_CACHE", "/c/hub", 1);
  ::setenv("HF_HOME", "/h", 1);
  EXPECT_EQ(ft::hub::cache_dir(), fs::path("/c/hub"));
  ::unsetenv("HF_HUB_CACHE");
  EXPECT_EQ(ft::hub::cache_dir(), fs::path("/h/hub"));
  ::unsetenv("HF_HOME");
  EXPECT_EQ(ft::hub::cache_dir().filename(), "hub");
  EXPECT_EQ(ft::hub::cache_dir().parent_path().filename(), "huggingface");
  if (old_cache) ::setenv("HF_HUB_CACHE", saved_cache.c_str(), 1);
  if (old_home) ::setenv("HF_HOME", saved_home.c_str(), 1);
}

TEST_F(HubCache, AnIdOpensItsSnapshotAtEachRevision) {
  const fs::path main = add("models--org--tiny-llama", kLlama, kCommit, "main");
  const fs::path pinned = add("models--org--tiny-llama", kLlama, kOther, "v1.0");
  EXPECT_EQ(ft::hub::resolve_model("org/tiny-llama"), main);
  EXPECT_EQ(ft::hub::resolve_model("org/tiny-llama@v1.0"), pinned);
  EXPECT_EQ(ft::hub::resolve_model("org/tiny-llama@" + kOther), pinned);
  // A path that exists is taken as it is, even where it reads like an id.
  EXPECT_EQ(ft::hub::resolve_model(kLlama.string()), kLlama);
  // The snapshot's links into blobs load as the folder does.
  auto from_cache = ft::models::load_model(ft::hub::resolve_model("org/tiny-llama"));
  auto from_folder = ft::models::load_model(kLlama);
  const auto a = from_cache->parameters(), b = from_folder->parameters();
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, value] : b)
    EXPECT_TRUE(mlx::core::array_equal(a.at(name), value).item<bool>()) << name;
}

TEST_F(HubCache, AGgufRepositoryOpensItsFile) {
  const fs::path dir = root_ / "src";
  fs::create_directories(dir);
  std::ofstream(dir / "model.Q4_0.gguf") << "GGUF";
  const fs::path snapshot = add("models--org--tiny-GGUF", dir, kCommit, "main");
  EXPECT_EQ(ft::hub::resolve_model("org/tiny-GGUF"), snapshot / "model.Q4_0.gguf");
  std::ofstream(dir / "model.Q8_0.gguf") << "GGUF";
  add("models--org--two-GGUF", dir, kCommit, "main");
  ft::testing::expect_error([] { ft::hub::resolve_model("org/two-GGUF"); }, "holds 2 GGUF files");
}

TEST_F(HubCache, WhatTheCacheDoesNotHoldIsOneError) {
  add("models--org--tiny-llama", kLlama, kCommit, "main");
  ft::testing::expect_error([] { ft::hub::resolve_model("org/absent"); }, "holds no revision");
  ft::testing::expect_error([] { ft::hub::resolve_model("org/tiny-llama@v9"); },
                            "holds no revision v9 of org/tiny-llama");
  ft::testing::expect_error([] { ft::hub::resolve_model("org/tiny-llama@" + kOther); },
                            "holds no revision");
  // What cannot be an id is left to the command, which says there is no such folder.
  EXPECT_EQ(ft::hub::resolve_model("/no/such/folder"), fs::path("/no/such/folder"));
  EXPECT_EQ(ft::hub::resolve_model("configs/run.yaml"), fs::path("configs/run.yaml"));
  ft::testing::expect_error([] { ft::hub::resolve_model("no-such/folder"); },
                            "'no-such/folder' is no file or folder here");
  // A ref that holds no commit is no revision.
  std::ofstream(root_ / "models--org--tiny-llama" / "refs" / "broken") << "not a commit";
  ft::testing::expect_error([] { ft::hub::resolve_model("org/tiny-llama@broken"); },
                            "holds no revision");
}

// The commands take the id where they take a folder.
TEST_F(HubCache, CommandsTakeAnId) {
  add("models--org--tiny-llama", kLlama, kCommit, "main");
  const std::string env = "HF_HUB_CACHE=" + root_.string() + " ";
  auto r = ft::testing::run_ft(env + FT_BINARY + " info org/tiny-llama", "", true);
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("llama"), std::string::npos) << r.out;
  r = ft::testing::run_ft(env + FT_BINARY + " info org/missing", "", true);
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("holds no revision"), std::string::npos) << r.out;
}

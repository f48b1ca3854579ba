// Downloads from a fake Hub that this test serves on 127.0.0.1 the way the Hub answers
// (Note [Downloads] in ft/hub/download.cpp): the API's listing, the resolve endpoint with
// its headers, LFS files redirected to a second path. Nothing here reaches the network.
#include <gtest/gtest.h>
#include <httplib.h>      // defines: httplib::Server
#include <openssl/evp.h>  // defines: EVP_Digest

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "ft/core/error.h"
#include "ft/hub/cache.h"
#include "ft/hub/download.h"
#include "ft/models/registry.h"
#include "tests/test_util.h"

namespace {

namespace fs = std::filesystem;
using ft::hub::download_model;
using ft::hub::parse_repo_id;
using ft::testing::expect_error;

const fs::path kLlama = fs::path(FT_TEST_DATA) / "models" / "llama";
const std::string kCommit = "0123456789abcdef0123456789abcdef01234567";

std::string read_bytes(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string hex_digest(const EVP_MD* md, const std::string& bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &size, md, nullptr);
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < size; ++i) out += {digits[digest[i] >> 4], digits[digest[i] & 15]};
  return out;
}

std::string git_blob_id(const std::string& bytes) {
  return hex_digest(EVP_sha1(), "blob " + std::to_string(bytes.size()) + '\0' + bytes);
}

std::string sha256(const std::string& bytes) {
  return hex_digest(EVP_sha256(), bytes);
}

struct FakeFile {
  std::string bytes;
  bool lfs = false;
};

struct FakeRepo {
  std::map<std::string, FakeFile> files;  // by path from the repository's root
  std::map<std::string, std::string> refs = {{"main", kCommit}};
  bool gated = false;  // 401 GatedRepo without "Authorization: Bearer <token>"
};

// The Hub's API and resolve endpoint for the repositories in repos, with LFS files
// redirected (302, relative) to /cdn/<sha256>.
class FakeHub {
 public:
  FakeHub() {
    server_.set_pre_routing_handler([this](const httplib::Request&, httplib::Response&) {
      ++requests;
      return httplib::Server::HandlerResponse::Unhandled;
    });
    server_.Get(R"(/api/models/([^/]+/[^/]+)/revision/(.+))",
                [this](const httplib::Request& req, httplib::Response& res) { list(req, res); });
    server_.Get(R"(/([^/]+/[^/]+)/resolve/([^/]+)/(.+))",
                [this](const httplib::Request& req, httplib::Response& res) { resolve(req, res); });
    server_.Get(R"(/cdn/([0-9a-f]{64}))",
                [this](const httplib::Request& req, httplib::Response& res) { cdn(req, res); });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::yield();
  }
  ~FakeHub() {
    server_.stop();
    thread_.join();
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  // Requests seen for files (resolve and cdn), and the Range headers of the cdn ones.
  int file_requests() {
    std::lock_guard<std::mutex> lock(mutex_);
    return file_requests_;
  }
  std::vector<std::string> ranges() {
    std::lock_guard<std::mutex> lock(mutex_);
    return ranges_;
  }
  std::vector<std::string> authorizations() {
    std::lock_guard<std::mutex> lock(mutex_);
    return authorizations_;
  }

  std::map<std::string, FakeRepo> repos;
  std::string token = "hf_secret";       // what a gated repository accepts
  std::atomic<int> requests{0};          // every request
  std::atomic<int> truncate_next{0};     // LFS bodies to cut off halfway
  std::atomic<bool> corrupt{false};      // flip a byte of LFS bodies
  std::atomic<int> missing_status{404};  // the Hub says 401 without a token

 private:
  // The repository of req, or nullptr after answering as the Hub does when it is missing
  // or gated.
  const FakeRepo* repo_of(const httplib::Request& req, httplib::Response& res) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      authorizations_.push_back(req.get_header_value("Authorization"));
    }
    auto it = repos.find(req.matches[1].str());
    if (it == repos.end()) {
      error(res, missing_status, "RepoNotFound", "Repository not found");
      return nullptr;
    }
    if (it->second.gated && req.get_header_value("Authorization") != "Bearer " + token) {
      error(res, 401, "GatedRepo", "Access to model " + it->first + " is restricted.");
      return nullptr;
    }
    return &it->second;
  }

  static void error(httplib::Response& res, int status, const std::string& code,
                    const std::string& message) {
    res.status = status;
    res.set_header("X-Error-Code", code);
    res.set_header("X-Error-Message", message);
    res.set_content(nlohmann::json{{"error", message}}.dump(), "application/json");
  }

  static std::optional<std::string> commit_of(const FakeRepo& repo, const std::string& revision) {
    if (revision == kCommit) return kCommit;
    auto it = repo.refs.find(revision);
    return it == repo.refs.end() ? std::nullopt : std::optional<std::string>(it->second);
  }

  void list(const httplib::Request& req, httplib::Response& res) {
    const FakeRepo* repo = repo_of(req, res);
    if (!repo) return;
    const std::optional<std::string> commit = commit_of(*repo, req.matches[2].str());
    if (!commit) return error(res, 404, "RevisionNotFound", "Invalid rev id");
    nlohmann::json siblings = nlohmann::json::array();
    for (const auto& [name, file] : repo->files) {
      nlohmann::json s = {{"rfilename", name}, {"size", file.bytes.size()}};
      if (file.lfs) {
        s["blobId"] = git_blob_id("version https://git-lfs.github.com/spec/v1\n" + name);
        s["lfs"] = {
            {"sha256", sha256(file.bytes)}, {"size", file.bytes.size()}, {"pointerSize", 134}};
      } else {
        s["blobId"] = git_blob_id(file.bytes);
      }
      siblings.push_back(s);
    }
    res.set_content(
        nlohmann::json{{"id", req.matches[1].str()}, {"sha", *commit}, {"siblings", siblings}}
            .dump(),
        "application/json");
  }

  void resolve(const httplib::Request& req, httplib::Response& res) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++file_requests_;
    }
    const FakeRepo* repo = repo_of(req, res);
    if (!repo) return;
    const std::optional<std::string> commit = commit_of(*repo, req.matches[2].str());
    if (!commit) return error(res, 404, "RevisionNotFound", "Invalid rev id");
    auto it = repo->files.find(req.matches[3].str());
    if (it == repo->files.end()) return error(res, 404, "EntryNotFound", "Entry not found");
    res.set_header("X-Repo-Commit", *commit);
    const std::string& bytes = it->second.bytes;
    if (it->second.lfs) {
      res.set_header("X-Linked-Etag", "\"" + sha256(bytes) + "\"");
      res.set_header("X-Linked-Size", std::to_string(bytes.size()));
      res.set_redirect("/cdn/" + sha256(bytes), 302);
    } else {
      res.set_header("ETag", "\"" + git_blob_id(bytes) + "\"");
      res.set_content(bytes, "application/octet-stream");
    }
  }

  void cdn(const httplib::Request& req, httplib::Response& res) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++file_requests_;
      if (req.has_header("Range")) ranges_.push_back(req.get_header_value("Range"));
    }
    std::string bytes;
    for (const auto& [name, repo] : repos)
      for (const auto& [path, file] : repo.files)
        if (file.lfs && sha256(file.bytes) == req.matches[1].str()) bytes = file.bytes;
    if (bytes.empty()) return error(res, 404, "EntryNotFound", "no such blob");
    if (corrupt) bytes[bytes.size() / 2] ^= 0x55;
    if (truncate_next > 0) {
      --truncate_next;
      // Content-Length says the whole file; half of it comes, then the connection closes.
      res.set_content_provider(bytes.size(), "application/octet-stream",
                               [bytes](size_t, size_t, httplib::DataSink& sink) {
                                 sink.write(bytes.data(), bytes.size() / 2);
                                 return false;
                               });
      return;
    }
    res.set_content(bytes, "application/octet-stream");  // httplib answers Range requests
  }

  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mutex_;
  int file_requests_ = 0;
  std::vector<std::string> ranges_, authorizations_;
};

// Sets environment variables for a scope and restores them after it.
class ScopedEnv {
 public:
  ~ScopedEnv() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
      if (it->second)
        ::setenv(it->first.c_str(), it->second->c_str(), 1);
      else
        ::unsetenv(it->first.c_str());
    }
  }
  // value nullptr: unset.
  void set(const std::string& name, const char* value) {
    const char* old = std::getenv(name.c_str());
    saved_.emplace_back(name, old ? std::optional<std::string>(old) : std::nullopt);
    if (value)
      ::setenv(name.c_str(), value, 1);
    else
      ::unsetenv(name.c_str());
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

// A fake Hub with org/tiny (the tiny Llama of the golden fixtures, a tokenizer, a README
// and a folder the default leaves out) and org/gated, and an empty cache as $HF_HUB_CACHE,
// online, with no token.
class Download : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) / ("ft_download_" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
    env_.set("HF_HUB_CACHE", (root_ / "cache").c_str());
    env_.set("HF_ENDPOINT", hub_.url().c_str());
    env_.set("HF_HUB_OFFLINE", nullptr);
    env_.set("HF_TOKEN", nullptr);
    env_.set("HF_TOKEN_PATH", (root_ / "no-token").c_str());
    FakeRepo tiny;
    tiny.files["config.json"] = {read_bytes(kLlama / "config.json")};
    tiny.files["generation_config.json"] = {read_bytes(kLlama / "generation_config.json")};
    tiny.files["model.safetensors"] = {read_bytes(kLlama / "model.safetensors"), true};
    tiny.files["tokenizer.json"] = {R"({"version": "1.0", "model": {"type": "BPE"}})"};
    tiny.files["README.md"] = {"# tiny\n"};
    tiny.files["original/params.json"] = {R"({"dim": 64})"};
    tiny.refs["v1.0"] = kCommit;
    hub_.repos["org/tiny"] = tiny;
    FakeRepo gated;
    gated.files["config.json"] = tiny.files["config.json"];
    gated.gated = true;
    hub_.repos["org/gated"] = gated;
  }
  void TearDown() override { fs::remove_all(root_); }

  fs::path repo_dir(const std::string& folder = "models--org--tiny") const {
    return root_ / "cache" / folder;
  }
  fs::path snapshot() const { return repo_dir() / "snapshots" / kCommit; }

  // The file names in a folder, sorted.
  static std::vector<std::string> names_in(const fs::path& dir) {
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& e : fs::recursive_directory_iterator(dir, ec))
      if (!e.is_directory()) names.push_back(e.path().lexically_relative(dir).string());
    std::sort(names.begin(), names.end());
    return names;
  }

  const std::string& served(const std::string& name) {
    return hub_.repos.at("org/tiny").files.at(name).bytes;
  }

  FakeHub hub_;
  ScopedEnv env_;
  fs::path root_;
};

ft::hub::RepoId id(const std::string& text) {
  return *parse_repo_id(text);
}

ft::hub::DownloadOptions quiet() {
  ft::hub::DownloadOptions options;
  options.progress = false;
  return options;
}

}  // namespace

TEST(DownloadChoice, GlobsMatchAsFnmatch) {
  using ft::hub::glob_match;
  EXPECT_TRUE(glob_match("*.json", "config.json"));
  EXPECT_TRUE(glob_match("*.json", "original/params.json"));  // '*' crosses '/'
  EXPECT_TRUE(glob_match("model-0000?-of-*.safetensors", "model-00001-of-00002.safetensors"));
  EXPECT_TRUE(glob_match("original/", "original/params.json"));
  EXPECT_TRUE(glob_match("*", ""));
  EXPECT_FALSE(glob_match("*.json", "config.jsonl"));
  EXPECT_FALSE(glob_match("?.bin", "ab.bin"));
  EXPECT_FALSE(glob_match("original/", "original"));
  EXPECT_TRUE(glob_match("a*b*c", "aXbYbZc"));
  EXPECT_FALSE(glob_match("a*b*c", "aXbYbZ"));
}

TEST(DownloadChoice, TheDefaultIsWhatAModelNeeds) {
  using ft::hub::select_files;
  const std::vector<std::string> both = {".gitattributes",
                                         "README.md",
                                         "config.json",
                                         "tokenizer.json",
                                         "tokenizer_config.json",
                                         "merges.txt",
                                         "chat_template.jinja",
                                         "model-00001-of-00002.safetensors",
                                         "model-00002-of-00002.safetensors",
                                         "model.safetensors.index.json",
                                         "pytorch_model.bin",
                                         "onnx/model.onnx",
                                         "original/consolidated.safetensors",
                                         "flax_model.msgpack"};
  EXPECT_EQ(select_files(both, {}, {}),
            (std::vector<std::string>{
                "config.json", "tokenizer.json", "tokenizer_config.json", "merges.txt",
                "chat_template.jinja", "model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors", "model.safetensors.index.json"}));
  // PyTorch's weights only where there are no safetensors.
  const std::vector<std::string> pytorch = {"config.json", "pytorch_model-00001-of-00002.bin",
                                            "pytorch_model.bin.index.json", "training_args.bin"};
  EXPECT_EQ(select_files(pytorch, {}, {}),
            (std::vector<std::string>{"config.json", "pytorch_model-00001-of-00002.bin",
                                      "pytorch_model.bin.index.json"}));
  // A GGUF repository: every .gguf file, unless patterns choose.
  const std::vector<std::string> gguf = {"README.md", "m.Q4_0.gguf", "m.Q8_0.gguf",
                                         "big/m.F16-00001-of-00002.gguf"};
  EXPECT_EQ(
      select_files(gguf, {}, {}),
      (std::vector<std::string>{"m.Q4_0.gguf", "m.Q8_0.gguf", "big/m.F16-00001-of-00002.gguf"}));
  EXPECT_EQ(select_files(gguf, {"*Q4_0*"}, {}), (std::vector<std::string>{"m.Q4_0.gguf"}));
  EXPECT_EQ(select_files(gguf, {}, {"big/", "*Q8*"}), (std::vector<std::string>{"m.Q4_0.gguf"}));
  // Include patterns replace the default; exclude patterns trim it.
  EXPECT_EQ(select_files(both, {"*.md", "onnx/*"}, {}),
            (std::vector<std::string>{"README.md", "onnx/model.onnx"}));
  EXPECT_EQ(select_files(both, {}, {"*.safetensors", "tokenizer*"}),
            (std::vector<std::string>{"config.json", "merges.txt", "chat_template.jinja",
                                      "model.safetensors.index.json"}));
}

TEST_F(Download, WritesTheLayoutHuggingfaceHubWrites) {
  const fs::path folder = download_model(id("org/tiny"), quiet());
  EXPECT_EQ(folder, snapshot());
  EXPECT_EQ(names_in(folder), (std::vector<std::string>{"config.json", "generation_config.json",
                                                        "model.safetensors", "tokenizer.json"}));
  for (const std::string name :
       {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"}) {
    const std::string& bytes = served(name);
    const std::string etag = name == "model.safetensors" ? sha256(bytes) : git_blob_id(bytes);
    // A relative link into blobs/, named by the etag, holding the bytes served.
    ASSERT_TRUE(fs::is_symlink(folder / name)) << name;
    EXPECT_EQ(fs::read_symlink(folder / name), fs::path("../../blobs") / etag) << name;
    EXPECT_TRUE(fs::is_regular_file(repo_dir() / "blobs" / etag)) << name;
    EXPECT_EQ(read_bytes(folder / name), bytes) << name;
  }
  EXPECT_EQ(read_bytes(repo_dir() / "refs" / "main"), kCommit);
  for (const std::string& blob : names_in(repo_dir() / "blobs"))
    EXPECT_EQ(blob.find(".incomplete"), std::string::npos) << blob;

  // The cache now answers for the id, and the snapshot loads as the folder does.
  EXPECT_EQ(ft::hub::resolve_model("org/tiny"), folder);
  auto from_cache = ft::models::load_model(folder);
  auto from_folder = ft::models::load_model(kLlama);
  for (const auto& [name, value] : from_folder->parameters())
    EXPECT_TRUE(mlx::core::array_equal(from_cache->parameters().at(name), value).item<bool>())
        << name;

  // A second download asks for the listing and nothing else; a tag gets its ref; a commit
  // needs none.
  const int files = hub_.file_requests();
  EXPECT_EQ(download_model(id("org/tiny"), quiet()), folder);
  EXPECT_EQ(download_model(id("org/tiny@v1.0"), quiet()), folder);
  EXPECT_EQ(download_model(id("org/tiny@" + kCommit), quiet()), folder);
  EXPECT_EQ(hub_.file_requests(), files);
  EXPECT_EQ(names_in(repo_dir() / "refs"), (std::vector<std::string>{"main", "v1.0"}));
}

TEST_F(Download, ResolveModelDownloadsWhatTheCacheLacks) {
  EXPECT_EQ(ft::hub::resolve_model("org/tiny"), snapshot());
  EXPECT_EQ(read_bytes(snapshot() / "config.json"), served("config.json"));
  // A missing repository is still the error of an id the cache does not hold.
  expect_error([] { ft::hub::resolve_model("org/absent"); },
               "holds no revision main of org/absent; downloading it failed: no repository "
               "org/absent");
}

TEST_F(Download, PatternsChooseTheFiles) {
  ft::hub::DownloadOptions options = quiet();
  options.include = {"*.json"};
  options.exclude = {"generation_*"};
  options.cache = root_ / "other-cache";
  const fs::path folder = download_model(id("org/tiny"), options);
  EXPECT_EQ(folder, root_ / "other-cache" / "models--org--tiny" / "snapshots" / kCommit);
  EXPECT_EQ(names_in(folder),
            (std::vector<std::string>{"config.json", "original/params.json", "tokenizer.json"}));
  // A file in a folder links one level further up.
  EXPECT_EQ(fs::read_symlink(folder / "original" / "params.json"),
            fs::path("../../../blobs") / git_blob_id(served("original/params.json")));
  EXPECT_EQ(read_bytes(folder / "original" / "params.json"), served("original/params.json"));
  EXPECT_FALSE(fs::exists(repo_dir()));  // $HF_HUB_CACHE untouched

  options.include = {"*.bin"};
  expect_error([&] { download_model(id("org/tiny"), options); },
               "no file of org/tiny at main is chosen (--include *.bin");
}

TEST_F(Download, AGatedModelNeedsAToken) {
  expect_error([] { download_model(id("org/gated"), quiet()); },
               "org/gated is a gated model (HTTP 401) and no token is set: set HF_TOKEN");
  EXPECT_FALSE(fs::exists(repo_dir("models--org--gated") / "snapshots"));

  // The token of HF_TOKEN is sent as a bearer token.
  {
    ScopedEnv token;
    token.set("HF_TOKEN", "hf_secret");
    const fs::path folder = download_model(id("org/gated"), quiet());
    EXPECT_EQ(read_bytes(folder / "config.json"), served("config.json"));
    EXPECT_EQ(hub_.authorizations().back(), "Bearer hf_secret");
  }
  // A wrong one is refused with the same advice; the token file is read too.
  ScopedEnv token;
  std::ofstream(root_ / "token") << "hf_wrong\n";
  token.set("HF_TOKEN_PATH", (root_ / "token").c_str());
  expect_error([] { download_model(id("org/gated@" + kCommit), quiet()); },
               "may not read it: accept its terms at " + hub_.url() + "/org/gated");
  EXPECT_EQ(hub_.authorizations().back(), "Bearer hf_wrong");
}

TEST_F(Download, AMissingRepositoryOrRevisionIsNamed) {
  expect_error([] { download_model(id("org/tiny@v9"), quiet()); },
               "org/tiny has no revision v9 (HTTP 404)");
  expect_error([] { download_model(id("org/absent"), quiet()); },
               "no repository org/absent on " + hub_.url() + " (HTTP 404)");
  // Without a token the Hub cannot tell a missing repository from a private one.
  hub_.missing_status = 401;
  expect_error([] { download_model(id("org/absent"), quiet()); },
               "(HTTP 401), or it is private: check the id, or set HF_TOKEN");
  EXPECT_FALSE(fs::exists(repo_dir()));
}

TEST_F(Download, ACutTransferResumesWithARangeRequest) {
  hub_.truncate_next = 1;
  expect_error([] { download_model(id("org/tiny"), quiet()); },
               "org/tiny: model.safetensors: the transfer stopped after");
  const std::string& weights = served("model.safetensors");
  const fs::path partial = repo_dir() / "blobs" / (sha256(weights) + ".incomplete");
  // Only the .incomplete file of the cut transfer: no blob, no link, no ref.
  ASSERT_TRUE(fs::is_regular_file(partial));
  const uint64_t kept = fs::file_size(partial);
  EXPECT_GT(kept, 0u);
  EXPECT_LT(kept, weights.size());
  EXPECT_FALSE(fs::exists(repo_dir() / "blobs" / sha256(weights)));
  EXPECT_FALSE(fs::exists(repo_dir() / "snapshots"));
  EXPECT_FALSE(fs::exists(repo_dir() / "refs"));

  const fs::path folder = download_model(id("org/tiny"), quiet());
  EXPECT_EQ(hub_.ranges(), (std::vector<std::string>{"bytes=" + std::to_string(kept) + "-"}));
  EXPECT_EQ(read_bytes(folder / "model.safetensors"), weights);
  EXPECT_FALSE(fs::exists(partial));
}

TEST_F(Download, ACorruptFileIsDiscarded) {
  hub_.corrupt = true;
  expect_error([] { download_model(id("org/tiny"), quiet()); },
               "org/tiny: model.safetensors: the downloaded file does not match the Hub's "
               "listing (SHA-256 ");
  const std::string etag = sha256(served("model.safetensors"));
  EXPECT_FALSE(fs::exists(repo_dir() / "blobs" / (etag + ".incomplete")));
  EXPECT_FALSE(fs::exists(repo_dir() / "blobs" / etag));
  EXPECT_FALSE(fs::exists(repo_dir() / "snapshots"));
  hub_.corrupt = false;
  EXPECT_EQ(read_bytes(download_model(id("org/tiny"), quiet()) / "model.safetensors"),
            served("model.safetensors"));
}

TEST_F(Download, OfflineNothingIsAsked) {
  ScopedEnv offline;
  offline.set("HF_HUB_OFFLINE", "1");
  expect_error([] { download_model(id("org/tiny"), quiet()); },
               "HF_HUB_OFFLINE is set, so ft does not download org/tiny");
  expect_error([] { ft::hub::resolve_model("org/tiny"); },
               "HF_HUB_OFFLINE is set, so ft does not download it: run `ft download org/tiny` "
               "on a connected machine, or give the model's folder");
  EXPECT_EQ(hub_.requests.load(), 0);
  // What the cache holds is what an offline download gives.
  offline.set("HF_HUB_OFFLINE", "0");
  const fs::path folder = download_model(id("org/tiny"), quiet());
  const int asked = hub_.requests.load();
  offline.set("HF_HUB_OFFLINE", "true");
  EXPECT_EQ(download_model(id("org/tiny"), quiet()), folder);
  EXPECT_EQ(hub_.requests.load(), asked);
}

TEST_F(Download, NoNetworkIsSaidSo) {
  ScopedEnv nowhere;
  nowhere.set("HF_ENDPOINT", "http://127.0.0.1:1");  // a port nothing listens on
  expect_error([] { download_model(id("org/tiny"), quiet()); },
               "cannot reach http://127.0.0.1:1 (");
  expect_error([] { download_model(id("org/tiny"), quiet()); },
               "without a network connection, run `ft download org/tiny` on a connected "
               "machine");
}

TEST_F(Download, TheCommandPrintsTheSnapshot) {
  const fs::path cache = root_ / "cli-cache";
  auto r = ft::testing::run_ft("download org/tiny --exclude '*.safetensors' --cache-dir " +
                               cache.string());
  ASSERT_EQ(r.status, 0) << r.out;
  const fs::path folder = cache / "models--org--tiny" / "snapshots" / kCommit;
  EXPECT_NE(r.out.find("downloaded config.json"), std::string::npos) << r.out;
  EXPECT_TRUE(r.out.size() > folder.string().size() &&
              r.out.substr(r.out.size() - folder.string().size() - 1) == folder.string() + "\n")
      << r.out;
  EXPECT_EQ(names_in(folder),
            (std::vector<std::string>{"config.json", "generation_config.json", "tokenizer.json"}));
  r = ft::testing::run_ft("download org/tiny@v9");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("ft: error: [hub] org/tiny has no revision v9"), std::string::npos) << r.out;
  r = ft::testing::run_ft("download tiny");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("'tiny' is no Hugging Face id"), std::string::npos) << r.out;
}

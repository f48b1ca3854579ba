#include "ft/hub/cache.h"

#include <cstdlib>
#include <fstream>
#include <vector>

#include "ft/core/error.h"
#include "ft/core/regex.h"    // defines: Regex
#include "ft/hub/download.h"  // defines: download_model, offline

namespace ft::hub {

namespace fs = std::filesystem;

// Note [Hugging Face cache]
// huggingface_hub keeps each repository in <cache>/models--ORG--NAME/:
//   refs/<branch or tag>   a text file holding the commit it points to (40 hex digits);
//   snapshots/<commit>/    the repository's files at that commit, each a symbolic link into
//   blobs/<hash>           the files' contents, shared by the snapshots.
// A revision that is a commit names its snapshot folder directly. ft reads this layout as
// it is, so a model downloaded by transformers, huggingface_hub or mlx-lm opens offline
// with the same id, and the snapshot folder is an ordinary model folder to the rest of ft;
// ft download writes it the same way (Note [Downloads] in download.cpp).
// The cache is found as huggingface_hub finds it: $HF_HUB_CACHE, $HF_HOME/hub,
// ~/.cache/huggingface/hub.

namespace {

constexpr const char* kPlace = "hub";

bool valid_name(const std::string& part) {
  static const Regex allowed(R"([A-Za-z0-9._-]+)", kPlace);
  return !part.empty() && allowed.full_match(part) && part.front() != '-' && part.front() != '.' &&
         part.back() != '-' && part.back() != '.' && part.find("--") == std::string::npos &&
         part.find("..") == std::string::npos;
}

std::string read_ref(const fs::path& file) {
  std::ifstream in(file);
  std::string commit;
  std::getline(in, commit);
  while (!commit.empty() && (commit.back() == '\r' || commit.back() == ' ')) commit.pop_back();
  return commit;
}

}  // namespace

std::optional<RepoId> parse_repo_id(const std::string& text) {
  const size_t at = text.find('@');
  const std::string repo = text.substr(0, at);
  const std::string revision = at == std::string::npos ? "main" : text.substr(at + 1);
  const size_t slash = repo.find('/');
  if (slash == std::string::npos || repo.find('/', slash + 1) != std::string::npos ||
      repo.size() > 96 || !valid_name(repo.substr(0, slash)) || !valid_name(repo.substr(slash + 1)))
    return std::nullopt;
  // A revision is a branch or tag name (which may hold '/') or a commit.
  static const Regex ref(R"([A-Za-z0-9._/-]+)", kPlace);
  if (revision.empty() || !ref.full_match(revision) || revision.find("..") != std::string::npos)
    return std::nullopt;
  return RepoId{repo, revision};
}

fs::path cache_dir() {
  if (const char* cache = std::getenv("HF_HUB_CACHE"); cache && *cache) return cache;
  if (const char* home = std::getenv("HF_HOME"); home && *home) return fs::path(home) / "hub";
  const char* user_home = std::getenv("HOME");
  return fs::path(user_home && *user_home ? user_home : ".") / ".cache" / "huggingface" / "hub";
}

bool is_commit(const std::string& revision) {
  static const Regex hex(R"([0-9a-f]{40})", kPlace);
  return hex.full_match(revision);
}

fs::path repo_folder(const fs::path& cache, const std::string& repo) {
  std::string folder = "models--" + repo;
  folder.replace(folder.find('/'), 1, "--");
  return cache / folder;
}

std::optional<fs::path> cached_snapshot(const RepoId& id, const fs::path& cache) {
  const fs::path repo = repo_folder(cache, id.repo);
  std::string commit = id.revision;
  if (!is_commit(commit)) {
    const fs::path ref = repo / "refs" / id.revision;
    std::error_code ec;
    if (!fs::is_regular_file(ref, ec)) return std::nullopt;
    commit = read_ref(ref);
    if (!is_commit(commit)) return std::nullopt;
  }
  const fs::path snapshot = repo / "snapshots" / commit;
  std::error_code ec;
  if (!fs::is_directory(snapshot, ec)) return std::nullopt;
  return snapshot;
}

fs::path resolve_model(const std::string& model) {
  std::error_code ec;
  if (fs::exists(model, ec)) return model;
  // A name ending as a file does (a config, data, weights) is a path that is missing.
  static const Regex file_like(R"(.*\.(ya?ml|jsonl?|gguf|safetensors|bin|npz|txt|md))", kPlace);
  const std::optional<RepoId> id = parse_repo_id(model);
  if (!id || file_like.full_match(model))
    return model;  // the command says that there is no such file or folder
  std::optional<fs::path> snapshot = cached_snapshot(*id);
  const std::string missing = detail::concat(
      "'", model, "' is no file or folder here, and the Hugging Face cache (", cache_dir().string(),
      "; $HF_HUB_CACHE or $HF_HOME choose another) holds no revision ", id->revision, " of ",
      id->repo);
  FT_CHECK(snapshot.has_value() || !offline(), kPlace, missing,
           "; HF_HUB_OFFLINE is set, so ft does not download it: run `ft download ", id->repo,
           "` on a connected machine, or give the model's folder");
  if (!snapshot) {
    try {
      snapshot = download_model(*id);
    } catch (const Error& e) {
      throw Error(kPlace, missing + "; downloading it failed: " + e.fact());
    }
  }
  if (fs::exists(*snapshot / "config.json", ec)) return *snapshot;
  std::vector<fs::path> ggufs;
  for (const auto& entry : fs::directory_iterator(*snapshot, ec))
    if (entry.path().extension() == ".gguf") ggufs.push_back(entry.path());
  FT_CHECK(ggufs.size() <= 1, kPlace, model, " holds ", ggufs.size(),
           " GGUF files and no config.json: give one of them by its path in ", snapshot->string());
  return ggufs.empty() ? *snapshot : ggufs.front();
}

}  // namespace ft::hub

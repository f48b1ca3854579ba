// Models named by Hugging Face repository id, found where transformers, huggingface_hub and
// mlx-lm keep them (Note [Hugging Face cache] in cache.cpp).
//
//   fs::path folder = ft::hub::resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct");
#pragma once

#include <filesystem>
#include <optional>
#include <string>

namespace ft::hub {

// A repository id with an optional revision: ORG/NAME[@REVISION].
struct RepoId {
  std::string repo;      // "ORG/NAME"
  std::string revision;  // a branch, tag or commit; "main" when not given
};

// The id when text is ORG/NAME[@REVISION] with the Hub's rules for names (letters, digits,
// '-', '_', '.'; no "--" or ".."; not starting or ending with '-' or '.'; at most 96
// characters), else nullopt.
std::optional<RepoId> parse_repo_id(const std::string& text);

// The cache folder: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub.
std::filesystem::path cache_dir();

// Whether revision is a commit: 40 lower-case hex digits.
bool is_commit(const std::string& revision);

// The folder of repository "ORG/NAME" in cache: cache/models--ORG--NAME.
std::filesystem::path repo_folder(const std::filesystem::path& cache, const std::string& repo);

// The snapshot folder of id in cache, or nullopt when the cache does not hold that revision.
std::optional<std::filesystem::path> cached_snapshot(
    const RepoId& id, const std::filesystem::path& cache = cache_dir());

// What a command opens for `model`: a path that exists, or one that cannot be an id, as it
// is (the command then says that there is no such file or folder); else a repository id's
// snapshot in the cache (its single .gguf file when it has no config.json but one),
// downloaded there first (ft/hub/download.h) when the cache does not hold that revision and
// $HF_HUB_OFFLINE allows it. Throws ft::Error saying what to do for an id whose revision
// the cache does not hold and that cannot be downloaded, and for a GGUF repository of
// several files.
std::filesystem::path resolve_model(const std::string& model);

}  // namespace ft::hub

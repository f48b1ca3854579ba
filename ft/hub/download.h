// Downloads a model from the Hugging Face Hub into the Hugging Face cache, in the layout
// huggingface_hub writes (Note [Hugging Face cache] in cache.cpp), so that transformers,
// huggingface_hub and mlx-lm find it there too (Note [Downloads] in download.cpp).
//
//   fs::path snapshot = ft::hub::download_model(*ft::hub::parse_repo_id("org/name@main"));
//
// The environment is huggingface_hub's: $HF_ENDPOINT (default https://huggingface.co), the
// token $HF_TOKEN, else the file $HF_TOKEN_PATH, else $HF_HOME/token (default
// ~/.cache/huggingface/token), and $HF_HUB_OFFLINE (1, true, yes, on), which forbids any
// network access.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "ft/hub/cache.h"  // defines: RepoId

namespace ft::hub {

struct DownloadOptions {
  std::vector<std::string> include;  // glob patterns; when given, they choose the files
  std::vector<std::string> exclude;  // glob patterns; files they match are left out
  std::filesystem::path cache;       // the cache folder; empty: cache_dir()
  bool progress = true;              // report the files on stderr
};

// Whether $HF_HUB_OFFLINE forbids network access.
bool offline();

// The advice for a machine that cannot download id.
std::string offline_advice(const RepoId& id);

// Downloads id's files (select_files) at its revision into the cache and returns the
// snapshot folder. Files the cache holds already are not fetched again, and a transfer
// that was cut off resumes where it stopped. Offline, returns the snapshot the cache holds.
// Throws ft::Error saying what to do: offline with nothing cached, no network, a gated or
// private repository without a token that reads it, a missing repository or revision, a
// file whose checksum does not match (discarded), a transfer cut off (resumed next time).
std::filesystem::path download_model(const RepoId& id, const DownloadOptions& options = {});

// Which of a repository's files (paths from its root) a download takes: those matching
// an include pattern, else the files a model needs (Note [Which files] in download.cpp);
// less those matching an exclude pattern. In the order of files.
std::vector<std::string> select_files(const std::vector<std::string>& files,
                                      const std::vector<std::string>& include,
                                      const std::vector<std::string>& exclude);

// Whether name matches pattern as Python's fnmatch matches: '*' any characters ('/'
// too), '?' one character; a pattern ending in '/' matches everything under that folder.
bool glob_match(std::string_view pattern, std::string_view name);

}  // namespace ft::hub

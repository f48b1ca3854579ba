// What POST /api/v1/jobs asks for, as ft train's settings: the TypeScript client's shape
// (baseModel, dataset, parameters, optimization) or ft's own YAML keys, with every model
// and data path confined to the server's roots. docs/serve.md gives both shapes.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ft::serve {

// The folders a job's paths must lie in.
class Roots {
 public:
  // Each folder must exist; they are kept canonical. Throws ft::Error otherwise.
  explicit Roots(const std::vector<std::filesystem::path>& folders);
  // `path` (relative ones from the first root) with `..` and symbolic links resolved, when
  // that lies inside a root; throws ApiError 403 naming `what` otherwise.
  std::filesystem::path confine(const std::string& path, const std::string& what) const;
  const std::vector<std::filesystem::path>& folders() const { return folders_; }

 private:
  std::vector<std::filesystem::path> folders_;
};

struct JobRequest {
  std::string name;         // the job's name; empty: none given
  nlohmann::json train;     // ft train's YAML keys ('-' spelling), paths resolved
  nlohmann::json exported;  // {"format": "gguf", "type": T} or null: no export
};

// Throws ApiError 400 for a body of the wrong shape or types, 403 for a path outside the
// roots, and 400 for the keys the server sets itself (output-dir, overwrite, config, events,
// tensorboard).
JobRequest parse_job_request(const nlohmann::json& body, const Roots& roots);

}  // namespace ft::serve

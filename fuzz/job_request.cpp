// The body of POST /api/v1/jobs (`ft serve`) through serve::parse_job_request, as the
// server reads it: JSON, then the job's settings in either shape (the TypeScript client's
// or ft's own keys), with every path confined to one root, /tmp. Confinement only reads
// the file system (canonical paths, symbolic links, whether a Hub id names a file): no
// file is written. A refusal must be an ApiError (a 400 or 403; any other ft::Error is the
// server's 500); settings that pass must hold only paths inside the root (or Hub ids where
// a model may be one), and are written as job.yml by dump(), done here too.
#include <nlohmann/json.hpp>

#include "ft/hub/cache.h"  // defines: hub::parse_repo_id
#include "ft/serve/job.h"  // defines: serve::ApiError
#include "ft/serve/job_settings.h"
#include "fuzz/fuzz_target.h"

namespace {

namespace fs = std::filesystem;

const ft::serve::Roots& job_roots() {
  static const ft::serve::Roots r({fs::path("/tmp")});
  return r;
}

// Whether `path` is the root or lies below it; a data path may end in ":WEIGHT".
bool is_confined(const std::string& path, bool weighted = false) {
  const std::string root = job_roots().folders().front().string();
  return path.starts_with(root) && (path.size() == root.size() || path[root.size()] == '/' ||
                                    (weighted && path[root.size()] == ':'));
}

}  // namespace

FT_FUZZ_TARGET(job_request) {
  // Not JSON: the server answers 400 before the parser runs.
  const nlohmann::json body = nlohmann::json::parse(ft::fuzz::bytes(data, size), nullptr,
                                                    /*allow_exceptions=*/false);
  if (body.is_discarded()) return 0;
  return ft::fuzz::refusing([&] {
    ft::serve::JobRequest r;
    try {
      r = ft::serve::parse_job_request(body, job_roots());
    } catch (const ft::serve::ApiError&) {
      throw;  // a refusal the server answers with its status (400, 403)
    } catch (const ft::Error& e) {
      throw ft::InternalError(std::string("not an ApiError, which the server answers with 500: ") +
                              e.what());
    }
    const nlohmann::json& train = r.train;
    for (const char* key : {"model", "teacher", "adapter"})
      if (train.contains(key)) {
        const std::string value = train[key].get<std::string>();
        FT_ASSERT(is_confined(value) || ft::hub::parse_repo_id(value).has_value());
      }
    for (const nlohmann::json& path : train.at("data"))
      FT_ASSERT(is_confined(path.get<std::string>(), /*weighted=*/true));
    for (const char* key : {"valid-data", "template"})
      if (train.contains(key) && train[key].get<std::string>().find('/') != std::string::npos)
        FT_ASSERT(is_confined(train[key].get<std::string>()));
    FT_ASSERT(!train.dump(2).empty() && !r.exported.dump().empty());
  });
}

#include "ft/hub/http.h"

#include "ft/hub/download.h"  // defines: offline_advice

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>

#include "ft/core/error.h"

namespace ft::hub {

namespace fs = std::filesystem;

namespace {

constexpr const char* kPlace = "hub";

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

std::string trimmed(const std::string& text) {
  const size_t begin = text.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) return "";
  return text.substr(begin, text.find_last_not_of(" \t\r\n") - begin + 1);
}

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

struct Transfer {
  CURL* curl = nullptr;
  Sink* sink = nullptr;
  bool ranged = false;   // the request asked for the bytes from an offset on
  bool started = false;  // the sink has taken bytes
  Response response;
};

size_t on_header(char* data, size_t size, size_t count, void* user) {
  Transfer& t = *static_cast<Transfer*>(user);
  const std::string line(data, size * count);
  if (line.rfind("HTTP/", 0) == 0) {
    t.response.headers.emplace_back();
  } else if (const size_t colon = line.find(':');
             colon != std::string::npos && !t.response.headers.empty()) {
    t.response.headers.back()[lower(trimmed(line.substr(0, colon)))] =
        trimmed(line.substr(colon + 1));
  }
  return size * count;
}

size_t on_body(char* data, size_t size, size_t count, void* user) {
  Transfer& t = *static_cast<Transfer*>(user);
  const size_t bytes = size * count;
  long status = 0;
  curl_easy_getinfo(t.curl, CURLINFO_RESPONSE_CODE, &status);
  if (!t.sink || (status != 200 && status != 206)) {
    // Error pages are kept only to quote their start.
    if (t.sink == nullptr || t.response.body.size() < 4096) t.response.body.append(data, bytes);
    return bytes;
  }
  if (!t.started && t.ranged && status == 200) t.sink->restart();
  t.started = true;
  return t.sink->write(data, bytes) ? bytes : 0;  // 0 stops the transfer
}

}  // namespace

std::string endpoint() {
  std::string url = env("HF_ENDPOINT");
  if (url.empty()) url = "https://huggingface.co";
  while (!url.empty() && url.back() == '/') url.pop_back();
  return url;
}

std::string token() {
  if (std::string value = trimmed(env("HF_TOKEN")); !value.empty()) return value;
  fs::path file = env("HF_TOKEN_PATH");
  if (file.empty()) {
    const std::string home = env("HF_HOME"), user_home = env("HOME");
    file = (home.empty() ? fs::path(user_home.empty() ? "." : user_home) / ".cache" / "huggingface"
                         : fs::path(home)) /
           "token";
  }
  std::ifstream in(file);
  std::string line;
  std::getline(in, line);
  return trimmed(line);
}

std::string url_encode(const std::string& text, bool keep_slash) {
  static const char* digits = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || (keep_slash && c == '/'))
      out += static_cast<char>(c);
    else
      out += {'%', digits[c >> 4], digits[c & 15]};
  }
  return out;
}

Response http_get(const std::string& url, Sink* sink, uint64_t resume_from, bool head) {
  static const bool initialized = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
  FT_CHECK(initialized, kPlace, "libcurl failed to initialize");
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
  FT_CHECK(curl != nullptr, kPlace, "libcurl failed to start a transfer");
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> headers(nullptr, curl_slist_free_all);
  // libcurl sends a header set here to the host of the URL only, never to the host a
  // redirect leads to (the storage of LFS files).
  if (const std::string secret = token(); !secret.empty())
    headers.reset(curl_slist_append(nullptr, ("Authorization: Bearer " + secret).c_str()));
  Transfer t;
  t.curl = curl.get();
  t.sink = sink;
  t.ranged = resume_from > 0;
  char error[CURL_ERROR_SIZE] = "";
  const std::string range = std::to_string(resume_from) + "-";
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(c, CURLOPT_USERAGENT, "ft/" FT_VERSION);
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, head ? 0L : 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
  // A transfer that moves no byte for a minute has stalled.
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  if (head) curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  if (resume_from > 0) curl_easy_setopt(c, CURLOPT_RANGE, range.c_str());
  t.response.code = curl_easy_perform(c);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &t.response.status);
  if (t.response.code != CURLE_OK)
    t.response.curl_error = *error ? error : curl_easy_strerror(t.response.code);
  return std::move(t.response);
}

[[noreturn]] void throw_unreachable(const RepoId& id, const Response& r) {
  throw Error(kPlace, detail::concat("cannot reach ", endpoint(), " (", r.curl_error,
                                     "); without a network connection, ", offline_advice(id)));
}

void check_status(const Response& r, const RepoId& id, const std::string& what) {
  if (r.status >= 200 && r.status < 300) return;
  const std::string code = r.header("x-error-code");
  const std::string page = endpoint() + "/" + id.repo;
  const bool have_token = !token().empty();
  const bool refused = r.status == 401 || r.status == 403;
  const std::string status = " (HTTP " + std::to_string(r.status) + ")";
  // The Hub answers 401 RepoNotFound for a private repository without a token, too.
  FT_CHECK(code != "RepoNotFound" && (r.status != 404 || !code.empty() || !what.empty()), kPlace,
           "no repository ", id.repo, " on ", endpoint(), status,
           refused && !have_token
               ? ", or it is private: check the id, or set HF_TOKEN to a token that can read it"
               : ": check the id ORG/NAME");
  if (code == "GatedRepo" || refused) {
    const std::string kind = code == "GatedRepo" ? " is a gated model" : " is private or gated";
    FT_CHECK(have_token, kPlace, id.repo, kind, status,
             " and no token is set: set HF_TOKEN to a Hugging Face token that can read it "
             "(or log in with `hf auth login`), after accepting its terms at ",
             page, " if it asks");
    throw Error(kPlace,
                detail::concat(id.repo, kind, status,
                               " and the token (HF_TOKEN, HF_TOKEN_PATH or "
                               "$HF_HOME/token) may not read it: accept its terms at ",
                               page, ", or set HF_TOKEN to a token of an account that can"));
  }
  FT_CHECK(code != "RevisionNotFound", kPlace, id.repo, " has no revision ", id.revision, status,
           ": give a branch, tag or commit it has, or leave out @REVISION for main");
  FT_CHECK(code != "EntryNotFound" && (r.status != 404 || what.empty()), kPlace, id.repo,
           " has no file ", what, " at ", id.revision, status);
  std::string message = r.header("x-error-message");
  if (message.empty()) message = trimmed(r.body.substr(0, 200));
  throw Error(kPlace, detail::concat(endpoint(), " answered HTTP ", r.status, " for ",
                                     what.empty() ? "the files of " + id.repo : what, ": ",
                                     message.empty() ? "no reason given" : message));
}

}  // namespace ft::hub

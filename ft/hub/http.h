// HTTP with the Hub for download.cpp: requests through libcurl with the token, and what
// the Hub's answers mean as errors that say what to do. The environment it reads is
// described in download.h.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <curl/curl.h>  // defines: CURLcode

#include "ft/hub/cache.h"  // defines: RepoId

namespace ft::hub {

// $HF_ENDPOINT without a trailing '/'; https://huggingface.co when not set.
std::string endpoint();

// $HF_TOKEN, else the first line of the file $HF_TOKEN_PATH, else of $HF_HOME/token
// (HF_HOME defaults to ~/.cache/huggingface); "" for none.
std::string token();

// Percent-encodes all but RFC 3986's unreserved characters, and '/' where keep_slash.
std::string url_encode(const std::string& text, bool keep_slash);

// Takes a successful response's body.
class Sink {
 public:
  virtual ~Sink() = default;
  // The server answered a Range request with the whole file: start over.
  virtual void restart() = 0;
  // Takes the next bytes; false stops the transfer.
  virtual bool write(const char* data, size_t size) = 0;
};

// What one request brought back.
struct Response {
  CURLcode code = CURLE_OK;  // the transfer's outcome
  std::string curl_error;    // libcurl's words when code is not CURLE_OK
  long status = 0;           // the last response's HTTP status
  // Each response's headers (names in lower case), in order: [0] is the Hub's own answer,
  // the rest come from where its redirects lead.
  std::vector<std::map<std::string, std::string>> headers;
  std::string body;  // the body, unless a sink took it

  // The header of the latest response that has it.
  std::string header(const std::string& name) const {
    for (auto it = headers.rbegin(); it != headers.rend(); ++it)
      if (auto found = it->find(name); found != it->end()) return found->second;
    return "";
  }
};

// GETs url with the token, following redirects (none with head, which asks for headers
// only). A sink takes a 2xx body; resume_from > 0 asks for the bytes from there on.
// Throws ft::Error only when libcurl cannot start; a failed transfer is in the Response.
Response http_get(const std::string& url, Sink* sink = nullptr, uint64_t resume_from = 0,
                  bool head = false);

// Throws ft::Error saying that the Hub cannot be reached, and what to do.
[[noreturn]] void throw_unreachable(const RepoId& id, const Response& r);

// Throws ft::Error saying what to do when r is not a success (a gated or private model, a
// missing repository, revision or file); `what` names the file asked for ("" for the
// listing).
void check_status(const Response& r, const RepoId& id, const std::string& what);

}  // namespace ft::hub

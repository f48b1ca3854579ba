#include "ft/serve/server.h"

#include <httplib.h>

#include <arpa/inet.h>  // defines: ntohs
#include <dirent.h>
#include <netinet/in.h>  // defines: sockaddr_in, sockaddr_in6
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "ft/serve/dashboard_page.h"  // defines: kDashboardPage (generated, CMakeLists.txt)

namespace ft::serve {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kJson = "application/json";
// The largest piece of a log one answer carries; the client asks again from the offset.
constexpr uint64_t kLogChunk = 4 << 20;

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(), kJson);
}

void send_error(httplib::Response& res, int status, const std::string& code,
                const std::string& message) {
  send_json(res, status, {{"error", {{"code", code}, {"message", message}}}});
}

// Equal strings, compared in a time that does not depend on where they differ.
bool same_secret(const std::string& given, const std::string& token) {
  if (given.size() != token.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < token.size(); ++i) diff |= given[i] ^ token[i];
  return diff == 0;
}

// A file inside the job's output folder named by `name` (a relative path), after `..` and
// links are resolved; nullopt for anything else.
std::optional<fs::path> artifact_path(const fs::path& output, const std::string& name) {
  std::error_code ec;
  const fs::path root = fs::canonical(output, ec);
  if (ec || name.empty() || fs::path(name).is_absolute()) return std::nullopt;
  const fs::path file = fs::weakly_canonical(root / name, ec);
  if (ec) return std::nullopt;
  auto r = root.begin();
  auto f = file.begin();
  for (; r != root.end(); ++r, ++f)
    if (f == file.end() || *f != *r) return std::nullopt;
  if (!fs::is_regular_file(file, ec)) return std::nullopt;
  return file;
}

// The files of a finished job a user would take away: the adapter or model, the best
// checkpoint, the GGUF export, the loss plot and the metrics, as paths under the output.
json list_artifacts(const fs::path& output) {
  json list = json::array();
  std::error_code ec;
  for (const char* top : {"adapter", "model", "best", "export", "loss.svg", "metrics.jsonl"}) {
    const fs::path p = output / top;
    if (fs::is_regular_file(p, ec)) {
      list.push_back({{"name", top}, {"bytes", fs::file_size(p, ec)}});
      continue;
    }
    if (!fs::is_directory(p, ec)) continue;
    std::vector<fs::path> files;
    for (auto it = fs::recursive_directory_iterator(p, ec); !ec && it != fs::end(it);
         it.increment(ec))
      if (it->is_regular_file(ec) && !it->path().filename().string().ends_with(".tmp"))
        files.push_back(it->path());
    std::sort(files.begin(), files.end());
    for (const fs::path& f : files)
      list.push_back({{"name", fs::relative(f, output, ec).generic_string()},
                      {"bytes", fs::file_size(f, ec)}});
  }
  return list;
}

// Note [Listen backlog]
// Debian's cpp-httplib 0.11 listens with a backlog of 5 connections, fixed when the library
// was built. A hundred clients connecting at once overflow it; the kernel drops their
// SYNs and they retry after 1, 3, 7... seconds, so some requests took 50 s. Linux lets a
// listening socket be given a new backlog by calling listen() again, so after binding we
// find the server's socket among this process's descriptors (the listening one on our
// port) and do that.
void widen_backlog(int port) {
  DIR* fds = opendir("/proc/self/fd");
  if (!fds) return;
  while (dirent* entry = readdir(fds)) {
    char* end = nullptr;
    const long fd = std::strtol(entry->d_name, &end, 10);
    if (*end != '\0' || fd == dirfd(fds)) continue;
    int listening = 0;
    socklen_t size = sizeof listening;
    if (getsockopt(static_cast<int>(fd), SOL_SOCKET, SO_ACCEPTCONN, &listening, &size) != 0 ||
        !listening)
      continue;
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    if (getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&address), &length) != 0)
      continue;
    int bound = 0;
    if (address.ss_family == AF_INET)
      bound = ntohs(reinterpret_cast<sockaddr_in*>(&address)->sin_port);
    else if (address.ss_family == AF_INET6)
      bound = ntohs(reinterpret_cast<sockaddr_in6*>(&address)->sin6_port);
    if (bound == port) ::listen(static_cast<int>(fd), SOMAXCONN);
  }
  closedir(fds);
}

}  // namespace

Server::Server(ServerOptions options, Roots roots, JobRunner& runner)
    : options_(std::move(options)),
      roots_(std::move(roots)),
      runner_(runner),
      http_(std::make_unique<httplib::Server>()) {
  FT_CHECK(!options_.token.empty(), "serve", "no token");
  const int threads = options_.threads;
  http_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http_->set_payload_max_length(options_.max_body_bytes);
  http_->set_keep_alive_timeout(5);
  // Without it a kept-alive connection waits on delayed ACKs: 40 ms a request.
  http_->set_tcp_nodelay(true);
  http_->set_read_timeout(30);
  http_->set_write_timeout(30);
  routes();
}

Server::~Server() = default;

int Server::bind() {
  int port = options_.port;
  if (port == 0) {
    port = http_->bind_to_any_port(options_.host);
    FT_CHECK(port > 0, "serve", "cannot listen on ", options_.host);
  } else {
    FT_CHECK(http_->bind_to_port(options_.host, port), "serve", "cannot listen on ", options_.host,
             ":", port, " (in use, or not an address of this machine)");
  }
  widen_backlog(port);
  return port;
}

void Server::listen() {
  http_->listen_after_bind();
}

void Server::stop() {
  stopping_ = true;
  http_->stop();
}

bool Server::authorized(const httplib::Request& req) const {
  const std::string header = req.get_header_value("Authorization");
  const std::string prefix = "Bearer ";
  return header.size() > prefix.size() && header.compare(0, prefix.size(), prefix) == 0 &&
         same_secret(header.substr(prefix.size()), options_.token);
}

void Server::routes() {
  httplib::Server& s = *http_;
  // Every API path but health needs the token; the dashboard's page does not (it asks for
  // the token and sends it with its own requests).
  s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (req.path.rfind("/api/", 0) != 0 || req.path == "/api/v1/health")
      return httplib::Server::HandlerResponse::Unhandled;
    if (authorized(req)) return httplib::Server::HandlerResponse::Unhandled;
    res.set_header("WWW-Authenticate", "Bearer");
    send_error(res, 401, "unauthorized",
               "missing or wrong token: send the header Authorization: Bearer TOKEN");
    return httplib::Server::HandlerResponse::Handled;
  });
  s.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        try {
          std::rethrow_exception(ep);
        } catch (const ApiError& e) {
          send_error(res, e.http_status(), e.code(), e.fact());
        } catch (const Error& e) {
          send_error(res, 500, "internal", e.what());
        } catch (const std::exception& e) {
          send_error(res, 500, "internal", e.what());
        }
      });
  // Answers httplib makes itself (no route, a body over the limit) get the API's form.
  s.set_error_handler(
      httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        if (res.status == 413)
          send_error(res, 413, "too_large", "the request body is over the server's limit");
        else if (res.status == 404)
          send_error(res, 404, "not_found", "no such path: " + req.path);
        else
          send_error(res, res.status, "bad_request", "the request was refused");
        return httplib::Server::HandlerResponse::Handled;
      }));

  auto page = [](const httplib::Request&, httplib::Response& res) {
    res.set_header("Content-Security-Policy",
                   "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
                   "img-src 'self' blob: data:");
    res.set_header("Cache-Control", "no-store");
    res.set_content(kDashboardPage.data(), kDashboardPage.size(), "text/html; charset=utf-8");
  };
  s.Get("/", page);
  s.Get("/index.html", page);

  s.Get("/api/v1/health", [this](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200,
              {{"status", "ok"},
               {"version", FT_VERSION},
               {"queued", runner_.store().list(JobStatus::queued).size()},
               {"running", runner_.store().list(JobStatus::running).size()}});
  });

  s.Post("/api/v1/jobs", [this](const httplib::Request& req, httplib::Response& res) {
    const json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
    if (body.is_discarded()) throw ApiError(400, "bad_request", "the body is not valid JSON");
    const Job job = runner_.submit(parse_job_request(body, roots_));
    send_json(res, 201, runner_.describe(job));
  });

  s.Get("/api/v1/jobs", [this](const httplib::Request& req, httplib::Response& res) {
    std::optional<JobStatus> status;
    if (req.has_param("status")) {
      status = parse_job_status(req.get_param_value("status"));
      if (!status)
        throw ApiError(400, "bad_request",
                       "unknown status '" + req.get_param_value("status") + "'");
    }
    json jobs = json::array();
    for (const Job& job : runner_.store().list(status)) jobs.push_back(runner_.describe(job));
    send_json(res, 200, {{"jobs", jobs}});
  });

  s.Get(R"(/api/v1/jobs/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
    send_json(res, 200, runner_.describe(runner_.get(req.matches[1])));
  });
  s.Delete(R"(/api/v1/jobs/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
    runner_.remove(req.matches[1]);
    res.status = 204;
  });
  // Cancel and resume take no body; with a content reader httplib does not ask for one,
  // so `curl -X POST` without Content-Length is answered too.
  s.Post(
      R"(/api/v1/jobs/([^/]+)/cancel)",
      [this](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader&) {
        send_json(res, 200, runner_.describe(runner_.cancel(req.matches[1])));
      });
  s.Post(
      R"(/api/v1/jobs/([^/]+)/resume)",
      [this](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader&) {
        send_json(res, 200, runner_.describe(runner_.resume(req.matches[1])));
      });

  s.Get(R"(/api/v1/jobs/([^/]+)/logs)",
        [this](const httplib::Request& req, httplib::Response& res) {
          const Job job = runner_.get(req.matches[1]);
          uint64_t offset = 0;
          if (req.has_param("offset")) {
            try {
              offset = std::stoull(req.get_param_value("offset"));
            } catch (const std::exception&) {
              throw ApiError(400, "bad_request", "offset must be a number of bytes");
            }
          }
          std::ifstream in(runner_.log_file(job.id), std::ios::binary);
          std::string text;
          if (in) {
            in.seekg(0, std::ios::end);
            const auto size = static_cast<uint64_t>(in.tellg());
            if (offset < size) {
              text.resize(std::min(size - offset, kLogChunk));
              in.seekg(static_cast<std::streamoff>(offset));
              in.read(text.data(), static_cast<std::streamsize>(text.size()));
              text.resize(static_cast<size_t>(in.gcount()));
            }
          }
          res.set_header("X-Next-Offset", std::to_string(offset + text.size()));
          res.set_content(text, "text/plain; charset=utf-8");
        });

  s.Get(R"(/api/v1/jobs/([^/]+)/metrics)",
        [this](const httplib::Request& req, httplib::Response& res) {
          const Job job = runner_.get(req.matches[1]);
          json steps = json::array(), evaluations = json::array();
          uint64_t offset = 0;
          for (const std::string& line :
               read_new_lines(runner_.output_dir(job.id) / "metrics.jsonl", offset)) {
            json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
            if (!j.is_object()) continue;
            (j.contains("val_loss") ? evaluations : steps).push_back(j);
          }
          send_json(res, 200, {{"steps", steps}, {"evaluations", evaluations}});
        });

  s.Get(R"(/api/v1/jobs/([^/]+)/artifacts)",
        [this](const httplib::Request& req, httplib::Response& res) {
          const Job job = runner_.get(req.matches[1]);
          send_json(res, 200, {{"artifacts", list_artifacts(runner_.output_dir(job.id))}});
        });
  s.Get(R"(/api/v1/jobs/([^/]+)/artifacts/(.+))", [this](const httplib::Request& req,
                                                         httplib::Response& res) {
    const Job job = runner_.get(req.matches[1]);
    const std::string name = req.matches[2];
    const std::optional<fs::path> file = artifact_path(runner_.output_dir(job.id), name);
    if (!file) throw ApiError(404, "not_found", "job " + job.id + " has no artifact " + name);
    std::error_code ec;
    const uint64_t size = fs::file_size(*file, ec);
    auto in = std::make_shared<std::ifstream>(*file, std::ios::binary);
    res.set_header("Content-Disposition",
                   "attachment; filename=\"" + file->filename().string() + "\"");
    res.set_content_provider(size, "application/octet-stream",
                             [in](size_t offset, size_t length, httplib::DataSink& sink) {
                               std::vector<char> buffer(std::min<size_t>(length, 1 << 20));
                               in->seekg(static_cast<std::streamoff>(offset));
                               in->read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
                               const auto got = static_cast<size_t>(in->gcount());
                               return got > 0 && sink.write(buffer.data(), got);
                             });
  });

  s.Get(R"(/api/v1/jobs/([^/]+)/events)",
        [this](const httplib::Request& req, httplib::Response& res) {
          events(req, res, req.matches[1]);
        });
}

// Note [Event streams]
// A stream replays the job's events.jsonl from the asked index, then follows it: each line
// is one SSE event whose id is its index, so a client that reconnects with Last-Event-ID
// (or ?from=) continues where it stopped. A status event carries the job object whenever
// the job's status changes. Once the job has ended and every line is sent, the stream
// ends. Each stream holds one of the server's threads, so their number is bounded.
void Server::events(const httplib::Request& req, httplib::Response& res, const std::string& id) {
  const Job job = runner_.get(id);
  int64_t from = 0;
  const std::string last = req.get_header_value("Last-Event-ID");
  try {
    if (!last.empty()) from = std::stoll(last) + 1;
    if (req.has_param("from")) from = std::stoll(req.get_param_value("from"));
  } catch (const std::exception&) {
    throw ApiError(400, "bad_request", "from and Last-Event-ID must be event numbers");
  }
  if (streams_.fetch_add(1) >= options_.max_streams) {
    streams_.fetch_sub(1);
    throw ApiError(503, "busy", "too many event streams are open; try again later");
  }
  struct State {
    uint64_t offset = 0;
    int64_t index = 0;
    std::string status;  // as last sent
    std::chrono::steady_clock::time_point last_write = std::chrono::steady_clock::now();
  };
  auto state = std::make_shared<State>();
  res.set_header("Cache-Control", "no-store");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, id, from, state](size_t, httplib::DataSink& sink) {
        if (stopping_ || !sink.is_writable()) return false;
        std::string out;
        // The job's status first: a stream of an ended job still ends after its lines.
        std::optional<Job> job = runner_.store().get(id);
        if (!job) {
          sink.done();
          return true;
        }
        for (const std::string& line : read_new_lines(runner_.events_file(id), state->offset)) {
          const int64_t index = state->index++;
          if (index < from) continue;
          const json e = json::parse(line, nullptr, /*allow_exceptions=*/false);
          if (!e.is_object() || !e.contains("event")) continue;
          json data = e;
          data.erase("event");
          out += "id: " + std::to_string(index) + "\nevent: " + e["event"].get<std::string>() +
                 "\ndata: " + data.dump() + "\n\n";
        }
        const std::string status = job_status_name(job->status);
        if (status != state->status) {
          out += "event: status\ndata: " + runner_.describe(*job).dump() + "\n\n";
          state->status = status;
        }
        const auto now = std::chrono::steady_clock::now();
        if (out.empty() && now - state->last_write > std::chrono::seconds(15))
          out = ": keep-alive\n\n";
        if (!out.empty()) {
          if (!sink.write(out.data(), out.size())) return false;
          state->last_write = now;
        }
        if (has_ended(job->status) && out.empty()) {
          sink.done();
          return true;
        }
        if (out.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(200));
        return true;
      },
      [this](bool) { streams_.fetch_sub(1); });
}

}  // namespace ft::serve

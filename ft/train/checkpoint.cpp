#include "ft/train/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "ft/core/error.h"

namespace ft::train {

namespace fs = std::filesystem;

// Note [Atomic checkpoints]
// rename(2) of a folder is atomic within a file system, but without fsync the data of
// the files inside may reach the disk after the rename does, so after a power loss the
// folder could exist with truncated files. Hence: write every file, fsync each, write the
// `complete` marker and fsync it, fsync the temporary folder, rename, fsync the parent.
// The marker is checked by readers as a second line of defence: a folder copied by hand
// or left by an older writer without it is never taken for a checkpoint.

namespace {

constexpr const char* kMarker = "complete";
constexpr const char* kTempPrefix = ".tmp-";

void fsync_path(const fs::path& path, bool directory) {
  int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  FT_CHECK(fd >= 0, "checkpoint", path.string(), ": cannot open to sync");
  int rc = ::fsync(fd);
  ::close(fd);
  FT_CHECK(rc == 0, "checkpoint", path.string(), ": fsync failed");
}

void write_text(const fs::path& path, const std::string& text) {
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    FT_CHECK(out, "checkpoint", path.string(), ": cannot open for writing");
    out << text;
    out.flush();
    FT_CHECK(out, "checkpoint", path.string(), ": write failed");
  }
  fsync_path(path, false);
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  FT_CHECK(in, "checkpoint", path.string(), ": cannot open");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::optional<int64_t> step_of(const std::string& name) {
  if (name.rfind("step-", 0) != 0 || name.size() == 5) return std::nullopt;
  int64_t step = 0;
  for (size_t i = 5; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
    step = step * 10 + (name[i] - '0');
  }
  return step;
}

std::string state_json(const TrainerState& s) {
  nlohmann::json j;
  j["step"] = s.step;
  j["epoch"] = s.position.epoch;
  j["index"] = s.position.index;
  j["rng_state"] = {s.rng_state[0], s.rng_state[1]};
  j["best_val_loss"] = s.best_val_loss ? nlohmann::json(*s.best_val_loss) : nlohmann::json();
  j["evals_without_improvement"] = s.evals_without_improvement;
  if (s.loss_scale) {
    j["loss_scale"] = *s.loss_scale;
    j["loss_scale_good_steps"] = s.loss_scale_good_steps;
  }
  j["config_hash"] = s.config_hash;
  j["settings"] = s.settings;
  j["ranks"] = s.ranks;
  return j.dump(2) + "\n";
}

TrainerState parse_state(const fs::path& file) {
  TrainerState s;
  try {
    auto j = nlohmann::json::parse(read_text(file));
    s.step = j.at("step").get<int64_t>();
    s.position.epoch = j.at("epoch").get<int64_t>();
    s.position.index = j.at("index").get<int64_t>();
    auto rng = j.at("rng_state");
    FT_CHECK(rng.is_array() && rng.size() == 2, "checkpoint", file.string(),
             ": rng_state must hold two numbers");
    s.rng_state = {rng[0].get<uint32_t>(), rng[1].get<uint32_t>()};
    if (!j.at("best_val_loss").is_null()) s.best_val_loss = j["best_val_loss"].get<double>();
    s.evals_without_improvement = j.at("evals_without_improvement").get<int64_t>();
    if (j.contains("loss_scale")) {
      s.loss_scale = j["loss_scale"].get<float>();
      s.loss_scale_good_steps = j.at("loss_scale_good_steps").get<int64_t>();
    }
    s.config_hash = j.at("config_hash").get<std::string>();
    if (j.contains("settings")) s.settings = j["settings"].get<std::string>();
    if (j.contains("ranks")) s.ranks = j["ranks"].get<int>();
  } catch (const nlohmann::json::exception& e) {
    throw Error("checkpoint", file.string() + ": " + e.what());
  }
  return s;
}

}  // namespace

fs::path checkpoint_folder(const fs::path& root, int64_t step) {
  char name[32];
  std::snprintf(name, sizeof(name), "step-%06lld", static_cast<long long>(step));
  return root / name;
}

fs::path write_checkpoint(const fs::path& root, const Checkpoint& c, const CheckpointFiles& files) {
  std::error_code ec;
  fs::create_directories(root, ec);
  FT_CHECK(!ec, "checkpoint", root.string(), ": cannot create folder: ", ec.message());
  fs::path final_dir = checkpoint_folder(root, c.state.step);
  fs::path temp = root / (kTempPrefix + final_dir.filename().string());
  fs::remove_all(temp, ec);
  fs::create_directory(temp, ec);
  FT_CHECK(!ec, "checkpoint", temp.string(), ": cannot create folder: ", ec.message());

  c.weights.save_safetensors((temp / "model.safetensors").string());
  fsync_path(temp / "model.safetensors", false);
  c.optimizer.save_safetensors((temp / "optimizer.safetensors").string());
  fsync_path(temp / "optimizer.safetensors", false);
  write_text(temp / "trainer.json", state_json(c.state));
  if (files) {
    files(temp);
    for (const auto& entry : fs::recursive_directory_iterator(temp))
      if (entry.is_regular_file()) fsync_path(entry.path(), false);
  }
  write_text(temp / kMarker, "");
  fsync_path(temp, true);

  // A folder of the same step (a run resumed from an earlier one) is moved aside first:
  // rename cannot replace a non-empty folder.
  if (fs::exists(final_dir)) {
    fs::path old = root / (kTempPrefix + final_dir.filename().string() + ".old");
    fs::remove_all(old, ec);
    fs::rename(final_dir, old, ec);
    FT_CHECK(!ec, "checkpoint", final_dir.string(), ": cannot move aside: ", ec.message());
    fs::remove_all(old, ec);
  }
  fs::rename(temp, final_dir, ec);
  FT_CHECK(!ec, "checkpoint", final_dir.string(), ": rename failed: ", ec.message());
  fsync_path(root, true);

  fs::path latest_temp = root / (std::string(kTempPrefix) + "latest");
  write_text(latest_temp, final_dir.filename().string() + "\n");
  fs::rename(latest_temp, root / "latest", ec);
  FT_CHECK(!ec, "checkpoint", (root / "latest").string(), ": rename failed: ", ec.message());
  fsync_path(root, true);
  return final_dir;
}

void prune_checkpoints(const fs::path& root, int keep) {
  FT_ASSERT(keep >= 1);
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return;
  std::vector<std::pair<int64_t, fs::path>> complete;
  std::vector<fs::path> leftovers;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    if (!entry.is_directory()) continue;
    const std::string name = entry.path().filename().string();
    if (name.starts_with(kTempPrefix)) {
      leftovers.push_back(entry.path());
    } else if (auto step = step_of(name); step && fs::exists(entry.path() / kMarker)) {
      complete.emplace_back(*step, entry.path());
    }
  }
  std::sort(complete.begin(), complete.end());
  for (size_t i = 0; i + size_t(keep) < complete.size(); ++i)
    leftovers.push_back(complete[i].second);
  for (const fs::path& folder : leftovers) {
    fs::remove_all(folder, ec);
    FT_CHECK(!ec, "checkpoint", folder.string(), ": cannot delete: ", ec.message());
  }
}

std::optional<fs::path> latest_checkpoint(const fs::path& root) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return std::nullopt;
  std::optional<fs::path> best;
  int64_t best_step = -1;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    if (!entry.is_directory()) continue;
    auto step = step_of(entry.path().filename().string());
    if (!step || !fs::exists(entry.path() / kMarker)) continue;
    if (*step > best_step) {
      best_step = *step;
      best = entry.path();
    }
  }
  return best;
}

Checkpoint read_checkpoint(const fs::path& folder) {
  FT_CHECK(fs::exists(folder / kMarker), "checkpoint", folder.string(),
           ": incomplete checkpoint (no '", kMarker, "' marker)");
  for (const char* file : {"model.safetensors", "optimizer.safetensors", "trainer.json"})
    FT_CHECK(fs::exists(folder / file), "checkpoint", (folder / file).string(), ": missing");
  Checkpoint c;
  c.weights = ParamMap::load_safetensors((folder / "model.safetensors").string());
  c.optimizer = ParamMap::load_safetensors((folder / "optimizer.safetensors").string());
  c.state = parse_state(folder / "trainer.json");
  return c;
}

}  // namespace ft::train

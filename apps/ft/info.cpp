// ft info: MLX's version and backend, the devices, and memory.
#include <iostream>

#include <nlohmann/json.hpp>

#include "apps/ft/commands.h"
#include "ft/core/device.h"

namespace ft::cli {
namespace {

void print_info(bool as_json) {
  SystemInfo info = system_info();
  if (as_json) {
    nlohmann::json out;
    out["ft_version"] = FT_VERSION;
    out["mlx_version"] = info.mlx_version;
    out["backend"] = info.backend;
    out["gpus"] = nlohmann::json::array();
    for (const auto& g : info.gpus)
      out["gpus"].push_back({{"index", g.index},
                             {"name", g.name},
                             {"architecture", g.architecture},
                             {"total_memory", g.total_memory},
                             {"free_memory", g.free_memory}});
    out["cpu"] = {{"model", info.cpu_model}, {"cores", info.cpu_cores}};
    out["system_memory"] = info.system_memory;
    out["mlx_memory_limit"] = info.mlx_memory_limit;
    std::cout << out.dump(2) << "\n";
    return;
  }
  std::cout << "ft " << FT_VERSION << "\n"
            << "MLX " << info.mlx_version << ", backend " << info.backend << "\n";
  for (const auto& g : info.gpus) {
    std::cout << "GPU " << g.index << ": " << g.name;
    if (!g.architecture.empty()) std::cout << " (" << g.architecture << ")";
    std::cout << ", " << format_bytes(g.total_memory) << " memory";
    if (g.free_memory) std::cout << ", " << format_bytes(g.free_memory) << " free";
    std::cout << "\n";
  }
  if (info.gpus.empty()) std::cout << "GPU: none\n";
  std::cout << "CPU: " << info.cpu_model << ", " << info.cpu_cores << " cores\n"
            << "System memory: " << format_bytes(info.system_memory) << "\n"
            << "MLX memory limit: " << format_bytes(info.mlx_memory_limit) << "\n";
}

}  // namespace

void add_info_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Show MLX's version and backend, devices and memory");
  auto as_json = std::make_shared<bool>(false);
  cmd->add_flag("--json", *as_json, "Print one JSON object");
  cmd->callback([as_json] { print_info(*as_json); });
}

}  // namespace ft::cli

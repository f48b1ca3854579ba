// config.json through the model layer: the family's reader that model_type picks (every
// family's fields, rope scaling and layer types), Config::validate, the quantization
// settings, then the model built with random weights. Building is lazy (no weight is
// computed), but it makes every module and parameter, so it is where a size that passed
// the readers would cost time or memory (Note [Config limits] in ft/models/config.cpp).
#include <nlohmann/json.hpp>

#include "ft/io/model_folder.h"
#include "ft/models/registry.h"
#include "fuzz/fuzz_target.h"

FT_FUZZ_TARGET(config_json) {
  // Not JSON: read_config refuses it before any reader runs.
  nlohmann::json json = nlohmann::json::parse(ft::fuzz::bytes(data, size), nullptr,
                                              /*allow_exceptions=*/false);
  if (json.is_discarded()) return 0;
  return ft::fuzz::refusing([&] {
    const ft::io::ModelConfig config(std::move(json), "config.json");
    ft::fuzz::refusing([&] { ft::io::quantization_config(config); });
    const ft::models::Config c = ft::models::from_hf_config(config);
    ft::Rng rng(0);
    ft::models::build_model(c, rng);
  });
}

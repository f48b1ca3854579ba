// A quantization recipe (`ft quantize --recipe FILE`) through models::parse_quant_recipe and
// plan_quantization over a Llama's module paths: the YAML reader, the rule words, layer
// ranges and std::regex on user patterns.
#include "ft/models/quantize_recipe.h"
#include "fuzz/fuzz_target.h"

FT_FUZZ_TARGET(quant_recipe) {
  return ft::fuzz::refusing([&] {
    const ft::models::QuantRecipe recipe =
        ft::models::parse_quant_recipe(ft::fuzz::bytes(data, size), "fuzz.yaml");
    const std::vector<std::string> paths = {"model.embed_tokens", "model.layers.0.self_attn.q_proj",
                                            "model.layers.0.mlp.down_proj",
                                            "model.layers.1.mlp.experts.gate_up_proj", "lm_head"};
    const ft::io::QuantizationConfig plan =
        ft::models::plan_quantization(recipe, {.group_size = 64, .bits = 4}, paths);
    FT_ASSERT(plan.modules.size() <= paths.size());
  });
}

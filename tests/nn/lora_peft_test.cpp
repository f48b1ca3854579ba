// LoRA, rsLoRA and DoRA against PEFT (tests/golden/make_lora_fixtures.py).
#include <gtest/gtest.h>

#include <mlx/ops.h>
#include <mlx/random.h>

#include "ft/core/param_map.h"
#include "ft/nn/lora.h"
#include "lora_test_util.h"
#include "nn_test_util.h"

namespace mx = mlx::core;
using ft_test::max_abs;
using ft_test::max_abs_diff;

namespace {

const ft::ParamMap& fixture() {
  static const ft::ParamMap map =
      ft::ParamMap::load_safetensors(std::string(FT_TEST_DATA) + "/lora_peft.safetensors");
  return map;
}

void check_case(const std::string& name, bool rslora, bool dora) {
  const auto& f = fixture();
  auto at = [&](const std::string& key) { return f.at(name + "." + key); };
  auto base = std::make_shared<ft::nn::Linear>(at("weight"), at("bias"));
  const int rank = 4;
  const float alpha = 8.0f;
  std::shared_ptr<ft::nn::LoRALinear> layer;
  if (dora) {
    auto d =
        std::make_shared<ft::nn::DoRALinear>(base, rank, alpha, mx::random::key(0), 0.0f, rslora);
    // PEFT starts the magnitude at the row norms of W, as we do.
    EXPECT_LT(max_abs_diff(d->lora_magnitude(), at("magnitude_init")), 1e-5f);
    layer = d;
  } else {
    layer =
        std::make_shared<ft::nn::LoRALinear>(base, rank, alpha, mx::random::key(0), 0.0f, rslora);
  }
  ft::ParamMap adapter{{"lora_A", at("lora_A")}, {"lora_B", at("lora_B")}};
  if (dora) adapter.set("lora_magnitude", at("lora_magnitude"));
  layer->load(adapter, /*strict=*/false);

  auto x = at("x");
  auto y = (*layer)(x);
  EXPECT_LT(max_abs_diff(y, at("y")), 1e-5f * max_abs(at("y")) + 1e-5f) << name;

  auto grads = ft_test::loss_and_grads(*layer, x, at("upstream")).second;
  for (const auto& adapter_name : layer->adapter_names()) {
    auto expected = at("grad_" + adapter_name);
    EXPECT_LT(max_abs_diff(grads.at(adapter_name), expected), 1e-4f * max_abs(expected) + 1e-6f)
        << name << " " << adapter_name;
  }

  auto fused = std::dynamic_pointer_cast<ft::nn::Linear>(layer->fuse());
  ASSERT_NE(fused, nullptr);
  EXPECT_LT(max_abs_diff(fused->weight(), at("merged_weight")), 1e-5f) << name;
}

}  // namespace

TEST(LoraPeft, Lora) {
  check_case("lora", false, false);
}
TEST(LoraPeft, RsLora) {
  check_case("rslora", true, false);
}
TEST(LoraPeft, Dora) {
  check_case("dora", false, true);
}

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <mlx/ops.h>

#include "ft/core/error.h"
#include "ft/core/param_map.h"
#include "ft/core/tree.h"

namespace mx = mlx::core;

TEST(ParamMap, KeepsInsertionOrderAndReplacesInPlace) {
  ft::ParamMap p;
  p.set("b", mx::array(1.0f));
  p.set("a", mx::array(2.0f));
  p.set("b", mx::array(3.0f));
  ASSERT_EQ(p.names(), (std::vector<std::string>{"b", "a"}));
  EXPECT_EQ(p.at("b").item<float>(), 3.0f);
}

TEST(ParamMap, MissingNameIsAnError) {
  ft::ParamMap p;
  try {
    p.at("model.x");
    FAIL();
  } catch (const ft::Error& e) {
    EXPECT_STREQ(e.what(), "[params] no parameter named 'model.x'");
  }
}

TEST(ParamMap, FilterAndPrefix) {
  ft::ParamMap p{{"layers.0.q.weight", mx::zeros({2})},
                 {"layers.0.k.weight", mx::zeros({3})},
                 {"norm.weight", mx::zeros({4})}};
  EXPECT_EQ(p.filter("\\.q\\.").names(), (std::vector<std::string>{"layers.0.q.weight"}));
  EXPECT_EQ(p.with_prefix("model").names()[2], "model.norm.weight");
  EXPECT_EQ(p.with_prefix("model").strip_prefix("model").names(), p.names());
  EXPECT_EQ(p.numel(), 9u);
  EXPECT_THROW(p.filter("("), ft::Error);
}

TEST(ParamMap, NaturalOrder) {
  EXPECT_TRUE(ft::natural_less("layers.2.w", "layers.10.w"));
  EXPECT_FALSE(ft::natural_less("layers.10.w", "layers.2.w"));
  EXPECT_TRUE(ft::natural_less("a", "ab"));
  EXPECT_FALSE(ft::natural_less("a", "a"));
}

TEST(ParamMap, SafetensorsRoundTrip) {
  auto path = std::filesystem::temp_directory_path() / "ft_param_map_test.safetensors";
  ft::ParamMap p{{"layers.10.w", mx::arange(6.0f)}, {"layers.2.w", mx::ones({2, 2}, mx::bfloat16)}};
  p.save_safetensors(path.string(), {{"format", "pt"}});
  std::unordered_map<std::string, std::string> metadata;
  auto q = ft::ParamMap::load_safetensors(path.string(), &metadata);
  EXPECT_EQ(q.names(), (std::vector<std::string>{"layers.2.w", "layers.10.w"}));
  EXPECT_EQ(q.at("layers.2.w").dtype(), mx::bfloat16);
  EXPECT_TRUE(mx::array_equal(q.at("layers.10.w"), mx::arange(6.0f)).item<bool>());
  EXPECT_EQ(metadata.at("format"), "pt");
  std::filesystem::remove(path);
}

TEST(ParamMap, CorruptSafetensorsIsAnError) {
  auto path = std::filesystem::temp_directory_path() / "ft_corrupt.safetensors";
  { std::ofstream(path) << "\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":"; }
  EXPECT_THROW(ft::ParamMap::load_safetensors(path.string()), ft::Error);
  EXPECT_THROW(ft::ParamMap::load_safetensors("/nonexistent/x.safetensors"), ft::Error);
  std::filesystem::remove(path);
}

TEST(Tree, UnflattenAndFlattenRoundTrip) {
  ft::ParamMap p{{"layers.0.w", mx::array(1.0f)},
                 {"layers.1.w", mx::array(2.0f)},
                 {"norm.weight", mx::array(3.0f)}};
  auto tree = ft::tree_unflatten(p);
  ASSERT_TRUE(tree.is_dict());
  const auto& layers = tree.dict().at("layers");
  ASSERT_TRUE(layers.is_list());
  EXPECT_EQ(layers.list().size(), 2u);
  EXPECT_EQ(layers.list()[1].dict().at("w").leaf().item<float>(), 2.0f);
  EXPECT_EQ(ft::tree_flatten(tree).names(),
            (std::vector<std::string>{"layers.0.w", "layers.1.w", "norm.weight"}));
}

TEST(Tree, ConflictsAreErrors) {
  EXPECT_THROW(ft::tree_unflatten({{"a", mx::array(1.0f)}, {"a.b", mx::array(1.0f)}}), ft::Error);
  EXPECT_THROW(ft::tree_unflatten({{"l.0", mx::array(1.0f)}, {"l.2", mx::array(1.0f)}}), ft::Error);
}

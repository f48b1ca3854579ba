// The tiny Llama configuration the tests of tests/train build their models from.
#pragma once

#include "ft/models/causal_lm.h"

namespace ft::testing {

// 2 layers, hidden 16, 4 heads (2 kv), vocabulary 32.
inline models::Config tiny_llama_config() {
  models::Config c;
  c.vocab_size = 32;
  c.hidden_size = 16;
  c.intermediate_size = 32;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  return c;
}

}  // namespace ft::testing

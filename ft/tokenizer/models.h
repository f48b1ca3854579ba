// Builders of the three model kinds; make_model in components.h dispatches on "type".
// Internal to ft/tokenizer.
#pragma once

#include <memory>

#include "ft/tokenizer/components.h"

namespace ft::tokenizer {

std::unique_ptr<Model> make_bpe(const json& j);
std::unique_ptr<Model> make_unigram(const json& j);
std::unique_ptr<Model> make_wordpiece(const json& j);

}  // namespace ft::tokenizer

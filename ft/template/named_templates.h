// Chat templates known by name (`ft train --template chatml`), for models that ship none
// (base models, DialoGPT) or to replace the one they ship. Each is ft's own Jinja source of
// a well-known conversation format (Note [Named templates] in named_templates.cpp).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ft::chat {

// chatml, llama2, llama3, mistral, phi3, gemma, alpaca, vicuna, zephyr.
const std::vector<std::string>& named_template_names();

// The Jinja source of a named template, or nullopt for an unknown name.
std::optional<std::string> named_template_source(std::string_view name);

}  // namespace ft::chat

// UTF-8 and Unicode helpers for the tokenizer: decoding code points, repairing invalid
// UTF-8, character classes as Rust's char methods define them, normalization forms.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ft::tokenizer {

// Length in bytes of the valid UTF-8 sequence starting at s[i] (1..4), or 0 when the bytes
// there are not a valid sequence.
int utf8_valid_length(std::string_view s, size_t i);

// Decodes the code point at s[i] of valid UTF-8 and advances i past it.
char32_t utf8_next(std::string_view s, size_t& i);

// Appends the UTF-8 encoding of cp.
void utf8_append(std::string& out, char32_t cp);

// Replaces every maximal invalid subpart with U+FFFD (Unicode's "maximal subpart" practice,
// as Python's errors="replace" and Rust's String::from_utf8_lossy do). Returns s unchanged
// (no copy) when it is already valid.
std::string utf8_repair(std::string_view s);
bool utf8_is_valid(std::string_view s);

// Character classes with the meaning of Rust's char methods, which the Hugging Face
// tokenizers library uses.
bool is_whitespace(char32_t c);      // White_Space property
bool is_alphanumeric(char32_t c);    // letters and numbers (L*, N*)
bool is_numeric(char32_t c);         // Nd, Nl, No
bool is_punctuation(char32_t c);     // P* or ASCII punctuation
bool is_combining_mark(char32_t c);  // Mn
bool is_control(char32_t c);         // C* (Cc, Cf, Co, Cn, Cs)

// Normalization forms of valid UTF-8 text (embedded NUL bytes allowed).
enum class NormalForm { nfc, nfd, nfkc, nfkd };
std::string normalize_form(std::string_view s, NormalForm form);
std::string to_lowercase(std::string_view s);

// The GPT-2 byte-level alphabet: each byte maps to a printable code point.
char32_t byte_to_char(uint8_t b);
// The byte a byte-level code point stands for, or -1 when cp is not in the alphabet.
int char_to_byte(char32_t cp);

}  // namespace ft::tokenizer

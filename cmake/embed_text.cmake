# cmake -DINPUT=FILE -DOUTPUT=HEADER -DNAME=IDENTIFIER -P embed_text.cmake
# Writes HEADER declaring `constexpr std::string_view IDENTIFIER` holding FILE's text, as a
# raw string literal whose delimiter the text must not contain.
file(READ "${INPUT}" text)
string(FIND "${text}" ")ft_embed\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${INPUT} contains the raw string delimiter )ft_embed\"")
endif()
file(WRITE "${OUTPUT}.tmp"
  "// Generated from ${INPUT} by cmake/embed_text.cmake.\n#pragma once\n#include <string_view>\n"
  "constexpr std::string_view ${NAME} = R\"ft_embed(${text})ft_embed\";\n")
file(RENAME "${OUTPUT}.tmp" "${OUTPUT}")

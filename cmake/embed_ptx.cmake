# Writes PTX text into a C++ source as a raw string: ft::kernels::ptx::<NAME>.
file(READ "${PTX}" text)
file(WRITE "${OUT}"
  "// Generated from ${NAME}.cu by nvcc -ptx; do not edit.\n"
  "namespace ft::kernels::ptx {\n"
  "extern const char* const ${NAME};\n"
  "const char* const ${NAME} = R\"ptx_text(${text})ptx_text\";\n"
  "}  // namespace ft::kernels::ptx\n")

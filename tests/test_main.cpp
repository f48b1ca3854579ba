// Runs the tests on the device ft would use (the GPU when MLX has one) and says which.
#include <gtest/gtest.h>

#include <cstdlib>
#include <iostream>

#include "ft/core/device.h"

int main(int argc, char** argv) {
  ft::choose_blas_core(argv);  // as the ft command does
  testing::InitGoogleTest(&argc, argv);
  // Tests compare float32 results with references computed in float32 or double;
  // cuBLAS's TF32 tensor-core mode would round matmul inputs to 10 mantissa bits.
  setenv("NVIDIA_TF32_OVERRIDE", "0", 0);
  // No test reaches the Hugging Face Hub: those that download point HF_ENDPOINT at a fake
  // Hub of their own and clear this; the ft commands tests run inherit it.
  setenv("HF_HUB_OFFLINE", "1", 0);
  std::string device = ft::use_preferred_device();
  // Keep gtest's --gtest_list_tests output clean for ctest discovery.
  if (!testing::GTEST_FLAG(list_tests)) std::cout << "ft tests on " << device << "\n";
  return RUN_ALL_TESTS();
}

// Runs the tests on the device ft would use (the GPU when MLX has one) and says which.
#include <gtest/gtest.h>

#include <iostream>

#include "ft/core/device.h"

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  std::string device = ft::use_preferred_device();
  // Keep gtest's --gtest_list_tests output clean for ctest discovery.
  if (!testing::GTEST_FLAG(list_tests)) std::cout << "ft tests on " << device << "\n";
  return RUN_ALL_TESTS();
}

// Note [OpenBLAS on CPUs it does not know]: which OpenBLAS kernels ft asks for.
#include <gtest/gtest.h>

#include "ft/core/device.h"

TEST(BlasCore, AFallbackToOldKernelsIsReplacedByTheCpusFamily) {
  EXPECT_EQ(ft::blas_core_for("Prescott", /*avx512=*/true, /*avx2_fma=*/true), "SkylakeX");
  EXPECT_EQ(ft::blas_core_for("Prescott", false, true), "Haswell");
  EXPECT_EQ(ft::blas_core_for("Nehalem", false, true), "Haswell");
  EXPECT_EQ(ft::blas_core_for("Sandybridge", true, true), "SkylakeX");
  // A CPU without AVX2 keeps what OpenBLAS chose.
  EXPECT_EQ(ft::blas_core_for("Prescott", false, false), "");
}

TEST(BlasCore, AFamilyWithAvx2KernelsIsKept) {
  for (const char* kept : {"Haswell", "Zen", "SkylakeX", "COOPERLAKE", "SapphireRapids"})
    EXPECT_EQ(ft::blas_core_for(kept, true, true), "") << kept;
}

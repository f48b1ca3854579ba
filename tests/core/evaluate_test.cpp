// ft::evaluate and evaluate_one_by_one: a failing operation is named with its inputs, the
// operations before it run, and a graph that does not fail gives mx::eval's values.
#include <gtest/gtest.h>

#include <memory>
#include <stdexcept>
#include <string>

#include <mlx/fast.h>
#include <mlx/ops.h>
#include <mlx/primitives.h>
#include <mlx/random.h>
#include <mlx/transforms.h>

#include "ft/core/device.h"
#include "ft/core/error.h"
#include "ft/core/evaluate.h"
#include "tests/test_util.h"

namespace mx = mlx::core;

namespace {

// An operation that always fails, as a kernel fault would, on either device.
class Failing : public mx::Primitive {
 public:
  explicit Failing(mx::Stream s) : mx::Primitive(s) {}
  void eval_cpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("bad value at index 3");
  }
  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("bad value at index 3");
  }
  const char* name() const override { return "Failing"; }
};

mx::array failing(const mx::array& x) {
  return mx::array(x.shape(), x.dtype(),
                   std::make_shared<Failing>(mx::default_stream(mx::default_device())), {x});
}

std::string error_of(const std::vector<mx::array>& outputs) {
  try {
    ft::evaluate_one_by_one(outputs);
  } catch (const ft::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Evaluate, OneByOneNamesTheFailingOperationAndItsInputs) {
  mx::array x = mx::ones({2, 3});
  mx::array y = x * 2.0f;
  mx::array z = failing(y);
  mx::array w = z + 1.0f;
  const std::string message = error_of({w});
  EXPECT_NE(message.find("[evaluate] Failing: inputs float32 (2, 3); outputs float32 (2, 3)"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("bad value at index 3"), std::string::npos) << message;
  // What came before the failure ran; what came after did not.
  EXPECT_NE(y.status(), mx::array::Status::unscheduled);
  EXPECT_EQ(w.status(), mx::array::Status::unscheduled);
}

TEST(Evaluate, OneByOneGivesTheValuesOfOneEvaluation) {
  mx::array a = mx::random::normal({4, 5}, mx::float32, 0, 1, mx::random::key(1));
  mx::array shared = mx::exp(a) - a;
  auto parts = mx::divmod(shared, mx::array(0.7f));  // two outputs of one operation
  mx::array left = mx::matmul(parts[0], mx::transpose(shared));
  mx::array right = mx::sum(parts[1] * shared, 0);
  mx::array expected_left =
      mx::matmul(mx::floor_divide(mx::exp(a) - a, mx::array(0.7f)), mx::transpose(mx::exp(a) - a));
  mx::array expected_right =
      mx::sum(mx::remainder(mx::exp(a) - a, mx::array(0.7f)) * (mx::exp(a) - a), 0);
  mx::eval({expected_left, expected_right});
  ft::evaluate_one_by_one({left, right});
  EXPECT_TRUE(mx::array_equal(left, expected_left).item<bool>());
  EXPECT_TRUE(mx::array_equal(right, expected_right).item<bool>());
}

TEST(Evaluate, RethrowNamedWrapsMlxFailuresAndKeepsFtErrors) {
  auto named = [](auto thrown) -> std::string {
    try {
      try {
        throw thrown;
      } catch (const std::runtime_error&) {
        ft::rethrow_named("train", "step 3");
      }
    } catch (const ft::Error& e) {
      return e.what();
    }
    return "";
  };
  const std::string wrapped =
      named(std::runtime_error("cudaGraphLaunch failed: an illegal memory access"));
  EXPECT_EQ(wrapped.rfind("[train] step 3 failed on ", 0), 0u) << wrapped;
  EXPECT_NE(wrapped.find(": cudaGraphLaunch failed: an illegal memory access"), std::string::npos)
      << wrapped;
  EXPECT_EQ(named(ft::Error("data", "row 7 is empty")), "[data] row 7 is empty");
}

// On an NVIDIA GPU a custom kernel that cannot launch (blocks of 4096 threads, above the
// limit of 1024) is named by its kernel name.
TEST(Evaluate, OneByOneNamesACustomKernelOnAGpu) {
  if (!ft::testing::on_gpu() || ft::backend_name() != "cuda") GTEST_SKIP() << "needs CUDA";
  auto kernel = mx::fast::cuda_kernel("ft_test_oversized_block", {"x"}, {"y"},
                                      "  y[threadIdx.x % 4] = x[threadIdx.x % 4];\n");
  mx::array x = mx::ones({4});
  mx::array y =
      kernel({x}, {{4}}, {mx::float32}, {4096, 1, 1}, {4096, 1, 1}, {}, std::nullopt, false, {})[0];
  const std::string message = error_of({y + 1.0f});
  // MLX prefixes the names of the kernels it compiles at run time.
  EXPECT_NE(message.find("[evaluate] CustomKernel custom_kernel_ft_test_oversized_block: inputs "
                         "float32 (4); outputs float32 (4) failed on cuda: "),
            std::string::npos)
      << message;
}

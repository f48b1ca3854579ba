// Evaluating MLX graphs so that a failure names the operation that failed
// (Note [Naming a failed kernel] in evaluate.cpp).
#pragma once

#include <string>
#include <vector>

#include <mlx/array.h>

namespace ft {

namespace mx = mlx::core;

// mx::eval; with FT_LOCATE_GPU_FAILURES=1, evaluate_one_by_one.
void evaluate(const std::vector<mx::array>& outputs);

// Evaluates the graph below outputs one operation at a time, waiting for each, and turns
// the first failure into an ft::Error that names the operation (a custom kernel by its
// kernel name), its inputs and outputs. Slow: for finding a failure, not for training.
void evaluate_one_by_one(const std::vector<mx::array>& outputs);

// Whether FT_LOCATE_GPU_FAILURES is set to something other than 0.
bool locating_failures();

// Call at program start, before MLX evaluates anything: when locating failures, MLX's CUDA
// backend runs each kernel on its own (no CUDA graphs, one operation per command buffer),
// so an asynchronous fault surfaces right after the kernel that caused it. Variables the
// user set are kept.
void prepare_failure_location();

// Call inside a catch block: an ft::Error goes on as it is; any other std::exception (MLX's
// failures: a CUDA call, the allocator) becomes ft::Error(place, "CALL failed on BACKEND:
// what"), which says how to name the kernel when the backend is a GPU and
// FT_LOCATE_GPU_FAILURES is not set.
[[noreturn]] void rethrow_named(const std::string& place, const std::string& call);

// "CustomKernel ft_swiglu_forward_bf16: inputs bfloat16 (4, 2048, 8192), ...; outputs ..."
std::string describe_operation(const mx::array& a);

}  // namespace ft

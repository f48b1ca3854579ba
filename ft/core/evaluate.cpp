#include "ft/core/evaluate.h"

#include <cstdlib>
#include <exception>
#include <sstream>
#include <unordered_set>

#include <mlx/fast_primitives.h>  // defines: mx::fast::CustomKernel
#include <mlx/primitives.h>
#include <mlx/stream.h>      // defines: mx::synchronize
#include <mlx/transforms.h>  // defines: mx::eval
#include <mlx/utils.h>       // defines: operator<< for Dtype

#include "ft/core/device.h"  // defines: backend_name
#include "ft/core/error.h"

namespace ft {

// Note [Naming a failed kernel]
// MLX evaluates a graph as a stream of kernels and reports a failure where it notices it:
// a CUDA call's name and status ("cudaGraphLaunch failed: an illegal memory access was
// encountered"), often several kernels after the one that faulted, since kernels run
// asynchronously and, on CUDA, inside graphs of up to 20 operations. So two layers:
//  - Always: the caller that knows what it was doing wraps the failure (rethrow_named):
//    "[train] step 12 failed on cuda: ...". The process then ends; after a fault a CUDA
//    context cannot be used again.
//  - With FT_LOCATE_GPU_FAILURES=1: prepare_failure_location turns MLX's CUDA graphs off
//    and commits every operation on its own, and evaluate walks the graph in dependency
//    order, evaluating and waiting for one operation at a time, so the first failure is the
//    operation that caused it. The message names the primitive (for a custom kernel, the
//    kernel's own name, e.g. ft_swiglu_forward_bf16) and the dtypes and shapes of its inputs
//    and outputs. Every intermediate result stays alive until the walk ends and nothing
//    runs in parallel: this is for finding a failure, not for training.

namespace {

std::string describe(const mx::array& a) {
  std::ostringstream out;
  out << a.dtype() << " (";
  for (size_t i = 0; i < a.shape().size(); ++i) out << (i ? ", " : "") << a.shape()[i];
  out << ")";
  return out.str();
}

std::string describe_all(const std::vector<mx::array>& arrays) {
  constexpr size_t shown = 6;
  std::string out;
  for (size_t i = 0; i < arrays.size() && i < shown; ++i)
    out += (i ? ", " : "") + describe(arrays[i]);
  if (arrays.size() > shown) out += ", and " + std::to_string(arrays.size() - shown) + " more";
  return out.empty() ? "none" : out;
}

// The arrays below outputs that still need evaluating, each after its inputs; one entry
// per operation (siblings, an operation's other outputs, are not repeated).
std::vector<mx::array> dependency_order(const std::vector<mx::array>& outputs) {
  std::vector<mx::array> order;
  std::unordered_set<std::uintptr_t> seen;
  auto pending = [](const mx::array& a) {
    return a.has_primitive() && a.status() == mx::array::Status::unscheduled;
  };
  // Iterative depth-first walk: (array, whether its inputs were pushed).
  std::vector<std::pair<mx::array, bool>> stack;
  for (const auto& a : outputs) stack.emplace_back(a, false);
  while (!stack.empty()) {
    auto [a, expanded] = stack.back();
    stack.pop_back();
    if (!pending(a)) continue;
    if (expanded) {
      if (!seen.insert(a.id()).second) continue;
      for (const auto& s : a.siblings()) seen.insert(s.id());
      order.push_back(a);
      continue;
    }
    if (seen.count(a.id())) continue;
    stack.emplace_back(a, true);
    for (const auto& in : a.inputs())
      if (pending(in) && !seen.count(in.id())) stack.emplace_back(in, false);
  }
  return order;
}

}  // namespace

std::string describe_operation(const mx::array& a) {
  if (!a.has_primitive()) return "a constant " + describe(a);
  const mx::Primitive& p = a.primitive();
  std::string name = p.name();
  if (name == "CustomKernel")
    name.append(" ").append(std::get<0>(static_cast<const mx::fast::CustomKernel&>(p).state()));
  return name + ": inputs " + describe_all(a.inputs()) + "; outputs " + describe_all(a.outputs());
}

bool locating_failures() {
  static const bool on = [] {
    const char* v = std::getenv("FT_LOCATE_GPU_FAILURES");
    return v && *v && std::string(v) != "0";
  }();
  return on;
}

void prepare_failure_location() {
  if (!locating_failures()) return;
  setenv("MLX_USE_CUDA_GRAPHS", "0", 0);
  setenv("MLX_MAX_OPS_PER_BUFFER", "1", 0);
}

void evaluate_one_by_one(const std::vector<mx::array>& outputs) {
  for (mx::array& a : dependency_order(outputs)) {
    // Described before evaluating: evaluation detaches an array from its inputs.
    const std::string what = describe_operation(a);
    const mx::Stream stream = a.primitive().stream();
    try {
      mx::eval(a);
      mx::synchronize(stream);
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      throw Error("evaluate", what + " failed on " + backend_name() + ": " + e.what());
    }
  }
}

void evaluate(const std::vector<mx::array>& outputs) {
  if (locating_failures()) evaluate_one_by_one(outputs);
  mx::eval(outputs);
}

void rethrow_named(const std::string& place, const std::string& call) {
  try {
    throw;
  } catch (const Error&) {
    throw;
  } catch (const std::runtime_error& e) {
    const std::string backend = backend_name();
    std::string fact = call + " failed on " + backend + ": " + e.what();
    if (backend != "cpu" && !locating_failures())
      fact +=
          " (FT_LOCATE_GPU_FAILURES=1 runs it again one kernel at a time and names the one"
          " that fails)";
    throw Error(place, fact);
  }
}

}  // namespace ft

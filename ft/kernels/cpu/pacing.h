// Pacing the host thread of a CPU evaluation by ft's own per-layer kernels instead of MLX's
// process-wide budget of tasks in flight, during row-sharded evaluations (Note [Pacing the
// host thread] in pacing.cpp).
#pragma once

#include <mlx/backend/cpu/encoder.h>

namespace ft::kernels::cpu {

// While one lives, MLX's eval does not wait for the process's tasks in flight to drop below
// its budget (the count it keeps is lowered by a large constant and restored at the end), and
// pace() paces the evaluating threads instead. For evaluations that all pass pacing points;
// they may run on several threads at once. Nesting is allowed.
class ScopedPacedEval {
 public:
  ScopedPacedEval();
  ~ScopedPacedEval();
  ScopedPacedEval(const ScopedPacedEval&) = delete;
  ScopedPacedEval& operator=(const ScopedPacedEval&) = delete;
};

// A pacing point, called from a kernel's eval_cpu after its dispatch to `encoder`: while a
// ScopedPacedEval lives, returns once the stream has run everything dispatched before this
// thread's pacing point kPaceDepth points back; otherwise at once.
void pace(mlx::core::cpu::CommandEncoder& encoder);

constexpr int kPaceDepth = 2;

}  // namespace ft::kernels::cpu

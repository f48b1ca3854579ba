#include "ft/kernels/cpu/swiglu.h"

#include <memory>

#include <mlx/allocator.h>            // defines: mx::allocator::malloc
#include <mlx/backend/cpu/encoder.h>  // defines: mx::cpu::get_command_encoder
#include <mlx/ops.h>
#include <mlx/primitives.h>

#include "ft/core/error.h"
#include "ft/kernels/cpu/pacing.h"
#include "ft/kernels/cpu/parallel.h"
#include "ft/kernels/cpu/storage.h"
#include "ft/kernels/cpu/vec_math.h"

namespace ft::kernels::cpu {
namespace {

// Elements per thread below which a thread costs more than it saves.
constexpr int64_t kMinPerThread = 1 << 14;

template <class S>
FT_CPU_CLONES void forward_range(const typename S::type* gate, const typename S::type* up,
                                 typename S::type* out, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    float x = S::load(gate[i]);
    float sigmoid = 1.0f / (1.0f + exp_approx(-x));
    out[i] = S::store(x * sigmoid * S::load(up[i]));
  }
}

template <class S>
FT_CPU_CLONES void backward_range(const typename S::type* gate, const typename S::type* up,
                                  const typename S::type* cotangent, typename S::type* d_gate,
                                  typename S::type* d_up, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    float x = S::load(gate[i]), u = S::load(up[i]), g = S::load(cotangent[i]);
    float sigmoid = 1.0f / (1.0f + exp_approx(-x));
    d_gate[i] = S::store(g * u * sigmoid * (1.0f + x * (1.0f - sigmoid)));
    d_up[i] = S::store(g * x * sigmoid);
  }
}

// Inputs {gate, up} (forward) or {gate, up, cotangent} (backward), all row-contiguous and of
// one dtype; outputs {out} or {d_gate, d_up}.
class CpuSwiglu : public mx::Primitive {
 public:
  CpuSwiglu(mx::Stream stream, bool backward) : mx::Primitive(stream), backward_(backward) {}

  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override {
    for (auto& out : outputs) out.set_data(mx::allocator::malloc(out.nbytes()));
    auto& encoder = mx::cpu::get_command_encoder(stream());
    std::vector<const void*> in;
    std::vector<void*> out;
    for (const auto& a : inputs) {
      encoder.set_input_array(a);
      in.push_back(a.data<void>());
    }
    for (auto& a : outputs) {
      encoder.set_output_array(a);
      out.push_back(a.data<void>());
    }
    encoder.dispatch([in, out, n = static_cast<int64_t>(inputs[0].size()),
                      dtype = inputs[0].dtype(), backward = backward_] {
      parallel_for(n, kMinPerThread, [&](int64_t begin, int64_t end) {
        dispatch_storage(dtype, [&](auto storage) {
          using S = decltype(storage);
          using T = typename S::type;
          auto input = [&](int k) { return static_cast<const T*>(in[k]); };
          auto output = [&](int k) { return static_cast<T*>(out[k]); };
          if (backward)
            backward_range<S>(input(0), input(1), input(2), output(0), output(1), begin, end);
          else
            forward_range<S>(input(0), input(1), output(0), begin, end);
        });
      });
    });
    pace(encoder);
  }

  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw Error("swiglu", "the CPU kernel ran on a GPU stream");
  }

  const char* name() const override { return backward_ ? "CpuSwigluVJP" : "CpuSwiglu"; }

  bool is_equivalent(const mx::Primitive& other) const override {
    return backward_ == static_cast<const CpuSwiglu&>(other).backward_;
  }

  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override {
    return std::vector<mx::Shape>(backward_ ? 2 : 1, inputs[0].shape());
  }

 private:
  bool backward_;
};

std::vector<mx::array> run(std::vector<mx::array> inputs, bool backward, mx::Stream s) {
  for (auto& a : inputs) a = mx::contiguous(a, false, s);
  const int n_outputs = backward ? 2 : 1;
  return mx::array::make_arrays(std::vector<mx::Shape>(n_outputs, inputs[0].shape()),
                                std::vector<mx::Dtype>(n_outputs, inputs[0].dtype()),
                                std::make_shared<CpuSwiglu>(s, backward), inputs);
}

}  // namespace

bool swiglu_supported(mx::Dtype dtype, mx::Stream s) {
  return s.device.type == mx::Device::cpu &&
         (dtype == mx::float32 || dtype == mx::bfloat16 || dtype == mx::float16);
}

mx::array swiglu_forward(const mx::array& gate, const mx::array& up, mx::Stream s) {
  FT_ASSERT(swiglu_supported(gate.dtype(), s) && gate.dtype() == up.dtype());
  return run({gate, up}, false, s)[0];
}

std::vector<mx::array> swiglu_backward(const mx::array& gate, const mx::array& up,
                                       const mx::array& cotangent, mx::Stream s) {
  FT_ASSERT(swiglu_supported(gate.dtype(), s) && gate.dtype() == up.dtype());
  auto g = mx::broadcast_to(mx::astype(cotangent, gate.dtype(), s), gate.shape(), s);
  return run({gate, up, g}, true, s);
}

}  // namespace ft::kernels::cpu

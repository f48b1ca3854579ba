// Probe: values of gather_mm / gather_qmm (rows of one, as a mixture of experts runs them)
// against a per-row reference, forward and the gradients of x and w, on the default device.
#include <mlx/mlx.h>
#include <cstdio>
#include <string>
#include <vector>
namespace mx = mlx::core;
float rel(const mx::array& a, const mx::array& b) {
  auto d = mx::max(mx::abs(mx::astype(a, mx::float32) - mx::astype(b, mx::float32)));
  auto s = mx::maximum(mx::max(mx::abs(mx::astype(b, mx::float32))), mx::array(1e-12f));
  return (d / s).item<float>();
}
int main() {
  for (auto dt : {mx::float32, mx::bfloat16}) {
  for (auto [T, E, in, out] : std::vector<std::tuple<int,int,int,int>>{{9,4,64,48},{64,4,64,48},{64,8,128,256},{512,8,256,512},{4096,8,1024,512}}) {
    auto key = mx::random::key(T + E);
    auto x = mx::astype(mx::random::normal({T, 1, in}, mx::float32, 0, 1, mx::random::key(1)), dt);
    auto w = mx::astype(mx::random::normal({E, out, in}, mx::float32, 0, 0.1, mx::random::key(2)), dt);
    auto idx = mx::astype(mx::random::randint(0, E, {T}, mx::int32, key), mx::uint32);
    auto sidx = mx::sort(idx);
    mx::eval(x, w, idx, sidx);
    for (bool sorted : {false, true}) {
      auto ind = sorted ? sidx : idx;
      // reference: take each row's matrix
      auto wt = mx::take(w, ind, 0);                         // (T, out, in)
      auto ref = mx::matmul(x, mx::swapaxes(wt, -1, -2));   // (T, 1, out)
      auto got = mx::gather_mm(x, mx::swapaxes(w, -1, -2), std::nullopt, ind, sorted);
      auto f = [&](const std::vector<mx::array>& p) { return std::vector<mx::array>{mx::sum(mx::square(mx::astype(mx::gather_mm(p[0], mx::swapaxes(p[1], -1, -2), std::nullopt, ind, sorted), mx::float32)))}; };
      auto fr = [&](const std::vector<mx::array>& p) { return std::vector<mx::array>{mx::sum(mx::square(mx::astype(mx::matmul(p[0], mx::swapaxes(mx::take(p[1], ind, 0), -1, -2)), mx::float32)))}; };
      std::string line;
      try {
        auto [v, g] = mx::value_and_grad(f, std::vector<int>{0, 1})({x, w});
        auto [vr, gr] = mx::value_and_grad(fr, std::vector<int>{0, 1})({x, w});
        char buf[256];
        snprintf(buf, sizeof buf, "fwd %.2e dx %.2e dw %.2e", rel(got, ref), rel(g[0], gr[0]), rel(g[1], gr[1]));
        line = buf;
      } catch (const std::exception& e) { line = std::string("FAIL ") + e.what(); }
      // quantized (in % 64 == 0)
      std::string qline;
      try {
        auto q = mx::quantize(mx::astype(w, dt), 64, 4);
        auto deq = mx::dequantize(q[0], q[1], q[2], 64, 4);
        auto qref = mx::matmul(x, mx::swapaxes(mx::take(deq, ind, 0), -1, -2));
        auto qgot = mx::gather_qmm(x, q[0], q[1], q[2], std::nullopt, ind, true, 64, 4, "affine", std::nullopt, sorted);
        auto fq = [&](const mx::array& xx) { return mx::sum(mx::square(mx::astype(mx::gather_qmm(xx, q[0], q[1], q[2], std::nullopt, ind, true, 64, 4, "affine", std::nullopt, sorted), mx::float32))); };
        auto fqr = [&](const mx::array& xx) { return mx::sum(mx::square(mx::astype(mx::matmul(xx, mx::swapaxes(mx::take(deq, ind, 0), -1, -2)), mx::float32))); };
        char buf[256];
        snprintf(buf, sizeof buf, " | q fwd %.2e dx %.2e", rel(qgot, qref), rel(mx::grad(fq)(x), mx::grad(fqr)(x)));
        qline = buf;
      } catch (const std::exception& e) { qline = std::string(" | q FAIL ") + e.what(); }
      printf("%s T=%d E=%d in=%d out=%d %s: %s%s\n", dt == mx::float32 ? "f32" : "bf16", T, E, in, out, sorted ? "sorted" : "unsorted", line.c_str(), qline.c_str());
      fflush(stdout);
    }
  }}
}

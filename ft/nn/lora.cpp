#include "ft/nn/lora.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <set>

#include <mlx/ops.h>
#include <mlx/random.h>
#include <mlx/transforms.h>

#include "ft/core/regex.h"  // defines: Regex
#include "ft/nn/experts.h"  // defines: ExpertWeights, gather_matmul_t
#include "ft/nn/init.h"

namespace ft::nn {
namespace {

void check_adapter_args(int rank, float alpha, float dropout) {
  FT_CHECK(rank > 0, "lora", "rank must be positive, got ", rank);
  FT_CHECK(alpha > 0.0f, "lora", "alpha must be positive, got ", alpha);
  FT_CHECK(dropout >= 0.0f && dropout < 1.0f, "lora", "dropout must be in [0, 1), got ", dropout);
}

const std::shared_ptr<Layer>& checked_base(const std::shared_ptr<Layer>& base) {
  FT_CHECK(base != nullptr, "lora", "the base layer is null");
  FT_CHECK(
      std::dynamic_pointer_cast<Linear>(base) || std::dynamic_pointer_cast<QuantizedLinear>(base),
      "lora", "can only wrap a Linear or a QuantizedLinear, got a ", base->type_name());
  return base;
}

int base_in_features(const Layer& base) {
  if (auto* q = dynamic_cast<const QuantizedLinear*>(&base)) return q->in_features();
  return dynamic_cast<const Linear&>(base).in_features();
}

int base_out_features(const Layer& base) {
  if (auto* q = dynamic_cast<const QuantizedLinear*>(&base)) return q->out_features();
  return dynamic_cast<const Linear&>(base).out_features();
}

// y + u sb^T with the rows flattened, so that BLAS sees one product, not one per batch row,
// adding into y (beta = 1) in place of a separate sum: one pass over (tokens, out) fewer.
mx::array add_low_rank(const mx::array& y, const mx::array& u, const mx::array& sb) {
  auto sum = mx::addmm(mx::reshape(y, {-1, y.shape(-1)}), mx::reshape(u, {-1, u.shape(-1)}),
                       mx::transpose(sb));
  return mx::reshape(sum, y.shape());
}

// Note [The adapter's backward]
// y = x W^T (+ b) + u (sB)^T with u = x A^T. Autodiff of that composite computes x's gradient
// as g W and du A apart and adds them: a pass over (tokens, in), and for the thin product a
// zeroing pass over its output (BLAS with beta = 0). adapted_linear's backward forms
// dx = g W + du A with the second product adding into the first (addmm, beta = 1), and takes
// u from the forward instead of recomputing it. Inputs {x, W, A, sB[, b]}; outputs {y, u},
// u only for the backward. Rows are flattened so that BLAS sees one product per matrix.
const std::function<std::vector<mx::array>(const std::vector<mx::array>&)>& adapted_linear() {
  static const auto fn = mx::custom_vjp(
      [](const std::vector<mx::array>& in) -> std::vector<mx::array> {
        const mx::array &x = in[0], &w = in[1], &a = in[2], &sb = in[3];
        auto x2 = mx::reshape(x, {-1, x.shape(-1)});
        auto y = in.size() > 4 ? mx::addmm(in[4], x2, mx::transpose(w))
                               : mx::matmul(x2, mx::transpose(w));
        auto u = mx::matmul(x2, mx::transpose(a));
        mx::Shape shape = x.shape();
        shape.back() = w.shape(0);
        return {mx::reshape(add_low_rank(y, u, sb), shape), u};
      },
      [](const std::vector<mx::array>& in, const std::vector<mx::array>& cotangents,
         const std::vector<mx::array>& outputs) -> std::vector<mx::array> {
        const mx::array &x = in[0], &w = in[1], &a = in[2], &sb = in[3], &u = outputs[1];
        auto x2 = mx::reshape(x, {-1, x.shape(-1)});
        auto g = mx::reshape(cotangents[0], {-1, w.shape(0)});
        auto du = mx::matmul(g, sb);
        auto gt = mx::transpose(g);
        std::vector<mx::array> grads{
            mx::reshape(mx::addmm(mx::matmul(g, w), du, a), x.shape()),  // dx
            mx::matmul(gt, x2),                                          // dW (frozen: unused)
            mx::matmul(mx::transpose(du), x2),                           // dA
            // d(sB) as (u^T g)^T: BLAS runs the (r, out) product about 1.7x faster than
            // the (out, r) one.
            mx::transpose(mx::matmul(mx::transpose(u), g))};
        if (in.size() > 4) grads.push_back(mx::sum(g, 0));
        return grads;
      });
  return fn;
}

// Note [Adapters in the activations' dtype]
// Adapters are kept in float32 over a bfloat16 or float16 base, as PEFT keeps them, so that
// their updates are not lost to rounding. Multiplying 16-bit activations by them would
// promote the products to float32: a float32 copy of every adapted layer's input, float32
// matmuls and a float32 (tokens, out) term cast back, each kept or recomputed for the
// backward. On a GPU that cost more than the base layers' own products. The adapter is
// cast to the activations' dtype instead ((r, in) and (out, r), next to nothing), so the
// products run in 16 bits like the base's, and the fused path of Note [The adapter's
// backward] applies; the gradients come back through the cast as float32 for A and B.
// This is what Unsloth computes; PEFT casts the activations up instead.
mx::Dtype adapter_compute_dtype(mx::Dtype activations, mx::Dtype adapter) {
  const bool half = activations == mx::bfloat16 || activations == mx::float16;
  return half && adapter == mx::float32 ? activations : adapter;
}

// Row norms over the inputs: (out, in) -> (out,).
mx::array row_norms(const mx::array& w) {
  return mx::sqrt(mx::sum(mx::square(w), 1));
}

}  // namespace

LoRALinear::LoRALinear(std::shared_ptr<Layer> base, int rank, float alpha, const mx::array& key,
                       float dropout, bool rslora, mx::Dtype dtype)
    : base_(checked_base(base)),
      linear_(std::dynamic_pointer_cast<Linear>(base_)),
      quantized_(std::dynamic_pointer_cast<QuantizedLinear>(base_)),
      scale_(0.0f),
      lora_A_(mx::array(0.0f)),
      lora_B_(mx::array(0.0f)) {
  check_adapter_args(rank, alpha, dropout);
  scale_ = rslora ? alpha / std::sqrt(static_cast<float>(rank)) : alpha / static_cast<float>(rank);
  int in = base_in_features(*base_), out = base_out_features(*base_);
  auto [a_key, dropout_key] = mx::random::split(key);
  lora_A_ = init::kaiming_uniform({rank, in}, in, std::sqrt(5.0f), a_key, dtype);
  lora_B_ = mx::zeros({out, rank}, dtype);
  dropout_ = std::make_shared<Dropout>(dropout, dropout_key);

  // See Note [LoRA parameter names] in lora.h.
  adopt_parameters(*base_);
  freeze();
  register_parameter("lora_A", &lora_A_);
  register_parameter("lora_B", &lora_B_);
  register_module("dropout", &dropout_);
  train(base_->training());
}

const std::optional<mx::array>& LoRALinear::base_bias() const {
  return quantized_ ? quantized_->bias() : linear_->bias();
}

mx::array LoRALinear::base_weight() const {
  return quantized_ ? quantized_->dequantized_weight() : linear_->weight_out_in();
}

mx::array LoRALinear::delta_weight() const {
  auto product = mx::matmul(lora_B_, lora_A_);  // (out, in)
  return mx::multiply(mx::array(scale_, product.dtype()), product);
}

mx::array LoRALinear::base_product(const mx::array& x) const {
  if (quantized_)
    return quantized_matmul_t(x, quantized_->weight(), quantized_->scales(), quantized_->biases(),
                              quantized_->group_size(), quantized_->bits());
  return mx::matmul(x, mx::transpose(linear_->weight_out_in()));
}

mx::array LoRALinear::operator()(const mx::array& x) {
  // Note [Adapters in the activations' dtype]
  const mx::Dtype dtype = adapter_compute_dtype(x.dtype(), lora_A_.dtype());
  auto a = mx::astype(lora_A_, dtype);
  // The scale goes on B, (out, r), not on the (tokens, out) product: in the backward a pass
  // over the product's gradient becomes one over B's.
  auto scaled_b = mx::astype(mx::multiply(mx::array(scale_, lora_B_.dtype()), lora_B_), dtype);
  const bool no_dropout = dropout_->p() == 0.0f || !dropout_->training();
  if (linear_ && !linear_->transposed() && no_dropout && x.dtype() == dtype &&
      linear_->weight().dtype() == dtype &&
      (!linear_->bias() || linear_->bias()->dtype() == dtype)) {
    linear_->check_input(x);
    std::vector<mx::array> in{x, linear_->weight(), a, scaled_b};
    if (linear_->bias()) in.push_back(*linear_->bias());
    return adapted_linear()(in)[0];  // Note [The adapter's backward]
  }
  auto y = (*base_)(x);  // checks x's shape
  auto xd = (*dropout_)(x);
  auto u = mx::matmul(xd, mx::transpose(a));
  if (u.dtype() == y.dtype()) return add_low_rank(y, u, scaled_b);  // no cast needed
  return mx::add(y, mx::astype(mx::matmul(u, mx::transpose(scaled_b)), y.dtype()));
}

mx::array LoRALinear::merged_weight() const {
  auto w = base_weight();
  return mx::add(mx::astype(w, mx::promote_types(w.dtype(), lora_A_.dtype())), delta_weight());
}

std::shared_ptr<Layer> LoRALinear::fuse(bool dequantize) const {
  mx::Dtype dtype = quantized_ ? quantized_->scales().dtype() : linear_->weight().dtype();
  mx::array merged = mx::astype(merged_weight(), dtype);  // (out, in)
  if (linear_ && linear_->transposed())
    return std::make_shared<Linear>(mx::transpose(merged), base_bias(), /*transposed=*/true);
  auto fused = std::make_shared<Linear>(merged, base_bias());
  if (!quantized_ || dequantize) return fused;
  return QuantizedLinear::from_linear(*fused, quantized_->group_size(), quantized_->bits());
}

DoRALinear::DoRALinear(std::shared_ptr<Layer> base, int rank, float alpha, const mx::array& key,
                       float dropout, bool rslora, mx::Dtype dtype)
    : LoRALinear(std::move(base), rank, alpha, key, dropout, rslora, dtype),
      lora_magnitude_(mx::array(0.0f)) {
  // B is zero, so W + s B A = W here.
  lora_magnitude_ = mx::astype(row_norms(mx::astype(base_weight(), mx::float32)), dtype);
  register_parameter("lora_magnitude", &lora_magnitude_);
}

mx::array DoRALinear::magnitude_scale() const {
  auto adapted = LoRALinear::merged_weight();  // (out, in)
  auto norms = mx::stop_gradient(row_norms(adapted));
  return mx::divide(lora_magnitude_, norms);
}

mx::array DoRALinear::operator()(const mx::array& x) {
  FT_CHECK(x.ndim() >= 1 && x.shape(-1) == in_features(), "lora", "input's last dimension is ",
           x.ndim() ? x.shape(-1) : 0, ", expected ", in_features());
  // Note [Adapters in the activations' dtype]
  const mx::Dtype dtype = adapter_compute_dtype(x.dtype(), lora_A_.dtype());
  auto g = mx::astype(magnitude_scale(), dtype);  // (out,)
  auto xd = (*dropout_)(x);
  auto scaled_b = mx::astype(mx::multiply(mx::array(scale_, lora_B_.dtype()), lora_B_), dtype);
  auto lora = mx::matmul(mx::matmul(xd, mx::transpose(mx::astype(lora_A_, dtype))),
                         mx::transpose(scaled_b));
  mx::array y = x;
  if (!dropout_->active()) {
    // (m/n) (x W^T + s x A^T B^T) + bias: one base product.
    y = mx::multiply(g, mx::add(base_product(x), lora));
    if (base_bias()) y = mx::add(y, *base_bias());
  } else {
    // PEFT's form: the base sees x, the magnitude correction and the adapter see the
    // dropped-out input.
    auto base_out = (*base_)(x);
    auto correction = mx::multiply(mx::subtract(g, mx::array(1.0f, g.dtype())), base_product(xd));
    y = mx::add(mx::add(base_out, correction), mx::multiply(g, lora));
  }
  mx::Dtype out_dtype = quantized_ ? quantized_->scales().dtype() : linear_->weight().dtype();
  return mx::astype(y, mx::promote_types(out_dtype, x.dtype()));
}

mx::array DoRALinear::merged_weight() const {
  auto g = magnitude_scale();
  return mx::multiply(mx::expand_dims(g, 1), LoRALinear::merged_weight());
}

ExpertLoRA::ExpertLoRA(int experts, int out_features, int in_features, int rank, float alpha,
                       const mx::array& key, bool rslora, mx::Dtype dtype)
    : experts_(experts), scale_(0.0f), lora_A_(mx::array(0.0f)), lora_B_(mx::array(0.0f)) {
  check_adapter_args(rank, alpha, 0.0f);
  FT_CHECK(experts > 0 && out_features > 0 && in_features > 0, "lora",
           "a stacked parameter needs positive sizes, got (", experts, ", ", out_features, ", ",
           in_features, ")");
  scale_ = rslora ? alpha / std::sqrt(static_cast<float>(rank)) : alpha / static_cast<float>(rank);
  // PEFT's nn.Linear(in, E*r): the same kaiming_uniform over fan-in `in` as LoRALinear's A.
  lora_A_ = init::kaiming_uniform({experts * rank, in_features}, in_features, std::sqrt(5.0f), key,
                                  dtype);
  lora_B_ = mx::zeros({out_features, experts * rank}, dtype);
  register_parameter("lora_A", &lora_A_);
  register_parameter("lora_B", &lora_B_);
}

mx::array ExpertLoRA::operator()(const mx::array& x, const mx::array& indices, bool sorted) const {
  int r = rank();
  // Note [Adapters on stacked expert parameters]: A's rows (E, r, in), B's columns
  // (out, r, E); the scale goes on B, the smaller operand of the backward.
  mx::array a = mx::reshape(lora_A_, {experts_, r, in_features()});  // (E, r, in)
  mx::array scaled_b = mx::multiply(mx::array(scale_, lora_B_.dtype()), lora_B_);
  mx::array b = mx::transpose(mx::reshape(scaled_b, {out_features(), r, experts_}),
                              {2, 0, 1});                                       // (E, out, r)
  mx::array u = gather_matmul_t(mx::astype(x, a.dtype()), a, indices, sorted);  // (..., 1, r)
  return gather_matmul_t(u, b, indices, sorted);                                // (..., 1, out)
}

mx::array ExpertLoRA::delta_weight() const {
  int r = rank();
  mx::array a = mx::reshape(lora_A_, {experts_, r, in_features()});  // (E, r, in)
  mx::array b =
      mx::transpose(mx::reshape(lora_B_, {out_features(), r, experts_}), {2, 0, 1});  // (E, out, r)
  mx::array product = mx::matmul(b, a);  // (E, out, in)
  return mx::multiply(mx::array(scale_, product.dtype()), product);
}

namespace {

// The i of a ".layers.<i>." component, or -1.
int layer_index(const std::string& path) {
  static const Regex layers_re(R"(.*?(?:^|\.)layers\.(\d{1,9})(?:\..*)?)", "lora");
  std::vector<std::string_view> groups;
  if (!layers_re.full_match(path, &groups)) return -1;
  return std::stoi(std::string(groups[1]));
}

std::string last_component(const std::string& path) {
  size_t dot = path.rfind('.');
  return dot == std::string::npos ? path : path.substr(dot + 1);
}

}  // namespace

// A stacked parameter that apply_lora adapts: its host and its name there.
struct StackedTarget {
  ExpertWeights* host;
  std::string parameter;
};

std::vector<std::string> apply_lora(Module& root, const LoraConfig& config) {
  check_adapter_args(config.rank, config.alpha, config.dropout);
  FT_CHECK(!config.target_modules.empty() || !config.target_regex.empty(), "lora",
           "give target_modules or target_regex");
  FT_CHECK(config.num_layers >= 0, "lora", "num_layers must be >= 0, got ", config.num_layers);
  std::optional<Regex> target_re;
  if (!config.target_regex.empty()) target_re.emplace(config.target_regex, "lora");

  auto modules = root.named_modules();
  int min_layer = -1;
  if (config.num_layers > 0) {
    std::set<int> indices;
    for (const auto& [path, module] : modules)
      if (int i = layer_index(path); i >= 0) indices.insert(i);
    FT_CHECK(!indices.empty(), "lora", "num_layers is ", config.num_layers,
             " but no module path has a '.layers.<i>.' component");
    auto it = indices.end();
    std::advance(it, -std::min<int>(config.num_layers, static_cast<int>(indices.size())));
    min_layer = *it;
  }
  const auto& targets = config.target_modules;
  const bool all_linear = std::find(targets.begin(), targets.end(), kAllLinear) != targets.end();
  // linear: path is a Linear's or QuantizedLinear's, not a stacked parameter's.
  auto targeted = [&](const std::string& path, bool linear) {
    const std::string last = last_component(path);
    bool named = std::find(targets.begin(), targets.end(), last) != targets.end() ||
                 (linear && all_linear && last != "lm_head");
    if (!named && !(target_re && target_re->search(path))) return false;
    return min_layer < 0 || layer_index(path) >= min_layer;
  };

  // paths[i] is a Linear's path, or a stacked parameter's when stacked has it.
  std::vector<std::string> paths;
  std::map<std::string, StackedTarget> stacked;
  for (const auto& [path, module] : modules) {
    if (path.empty()) continue;
    if (auto* host = dynamic_cast<ExpertWeights*>(module)) {
      for (const auto& parameter : host->stacked_names()) {
        const std::string full = path + "." + parameter;
        if (host->adapter(parameter) || !targeted(full, false)) continue;
        FT_CHECK(!config.dora, "lora", "DoRA on the stacked expert parameter '", full,
                 "' is not supported; use LoRA there or leave it out of the targets");
        FT_CHECK(config.dropout == 0.0f, "lora", "dropout on the stacked expert parameter '", full,
                 "' is not supported (its input is shared by every expert); set it to 0");
        paths.push_back(full);
        stacked.emplace(full, StackedTarget{host, parameter});
      }
      continue;
    }
    if (!dynamic_cast<Linear*>(module) && !dynamic_cast<QuantizedLinear*>(module)) continue;
    if (targeted(path, true)) paths.push_back(path);
  }
  FT_CHECK(!paths.empty(), "lora",
           "no Linear or QuantizedLinear matches the targets, nor any stacked expert parameter");

  auto keys = mx::random::split(mx::random::key(config.seed), static_cast<int>(paths.size()));
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> replaced;
  std::vector<std::shared_ptr<LoRALinear>> wrappers;
  std::vector<std::shared_ptr<ExpertLoRA>*> filled;
  try {
    for (size_t i = 0; i < paths.size(); ++i) {
      auto key = mx::take(keys, static_cast<int>(i), 0);
      if (auto it = stacked.find(paths[i]); it != stacked.end()) {
        auto& [host, parameter] = it->second;
        const StackedWeight& weight = host->stacked(parameter);
        auto& slot = host->adapter(parameter);
        slot = std::make_shared<ExpertLoRA>(weight.experts(), weight.out_features(),
                                            weight.in_features(), config.rank, config.alpha, key,
                                            config.rslora, config.dtype);
        filled.push_back(&slot);
        continue;
      }
      auto base = std::dynamic_pointer_cast<Layer>(root.find_module(paths[i]));
      FT_ASSERT(base != nullptr);
      std::shared_ptr<LoRALinear> wrapper =
          config.dora ? std::make_shared<DoRALinear>(base, config.rank, config.alpha, key,
                                                     config.dropout, config.rslora, config.dtype)
                      : std::make_shared<LoRALinear>(base, config.rank, config.alpha, key,
                                                     config.dropout, config.rslora, config.dtype);
      root.replace_module(paths[i], wrapper);
      replaced.emplace_back(paths[i], base);
      wrappers.push_back(wrapper);
    }
  } catch (...) {
    for (auto& [path, base] : replaced) root.replace_module(path, base);
    for (auto* slot : filled) slot->reset();
    throw;
  }

  root.freeze();
  for (auto& wrapper : wrappers) {
    std::string names;
    for (const auto& name : wrapper->adapter_names()) names += (names.empty() ? "" : "|") + name;
    wrapper->unfreeze("^(" + names + ")$");
  }
  for (auto* slot : filled) (*slot)->unfreeze();
  return paths;
}

std::vector<std::string> fuse_lora(Module& root, bool dequantize) {
  // Collected first: fusing drops the adapters that named_modules points into.
  std::vector<std::pair<std::string, std::shared_ptr<Layer>>> fused;
  std::vector<std::pair<std::string, StackedTarget>> merged;
  for (const auto& [path, module] : root.named_modules()) {
    if (auto* wrapper = dynamic_cast<LoRALinear*>(module))
      fused.emplace_back(path, wrapper->fuse(dequantize));
    if (auto* host = dynamic_cast<ExpertWeights*>(module))
      for (const auto& parameter : host->stacked_names())
        if (host->adapter(parameter))
          merged.emplace_back(path.empty() ? parameter : path + "." + parameter,
                              StackedTarget{host, parameter});
  }
  std::vector<std::string> paths;
  for (auto& [path, layer] : fused) {
    if (path.empty()) continue;  // root itself cannot be replaced in place
    root.replace_module(path, layer);
    paths.push_back(path);
  }
  for (auto& [path, target] : merged) {
    const StackedWeight& base = target.host->stacked(target.parameter);
    auto& slot = target.host->adapter(target.parameter);
    mx::array delta = slot->delta_weight();  // (E, out, in)
    mx::Dtype compute = mx::promote_types(base.dtype(), delta.dtype());
    mx::array w = mx::astype(mx::add(mx::astype(base.dequantized(), compute), delta), base.dtype());
    target.host->set_stacked(target.parameter,
                             base.is_quantized() && !dequantize
                                 ? StackedWeight::quantized(w, base.group_size, base.bits)
                                 : StackedWeight::floats(w));
    slot.reset();
    paths.push_back(path);
  }
  return paths;
}

}  // namespace ft::nn

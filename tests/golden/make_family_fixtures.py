"""Tiny random Hugging Face models of further families, their expected outputs, and greedy
generation references, for tests/models and tests/generate.

Run from the repository root with a Python that has torch, transformers, peft and
safetensors (written with torch 2.15, transformers 5.25.0, peft 0.21.2):

    .golden-venv/bin/python tests/golden/make_family_fixtures.py [name ...]

(names limit the run to those variants / existing fixtures; by default it makes all of them.)

For each variant below this writes
  tests/golden/models/<name>/   config.json, generation_config.json and model.safetensors,
                                as save_pretrained(safe_serialization=True) writes them
                                (gpt2_bare, mixtral_legacy, mixtral_fused: see below)
  tests/golden/models/<name>_expected.safetensors holding
    ids      (2, 12) int32   the input ids
    logits   (2, 12, vocab)  float32, eval mode, eager attention, float32 weights
    loss     ()              the model's own loss with labels = ids (mean next-token
                             cross-entropy)
    grad.<parameter name>    gradients of that loss for a few weights, named as in the saved
                             model.safetensors
  and, with PEFT LoRA (rank 4, alpha 8, so scale 2; dropout 0) on the variant's target modules,
  with random nonzero adapters (0.2 * randn):
    lora.<module>.lora_A (r, in) / lora_B (out, r)   the adapters, PEFT's shapes; <module> is
                                                     the path in the base model's named_modules
    lora_logits, lora_loss                           the adapted model's outputs
    lora_grad.<module>.lora_A / lora_B               gradients of lora_loss
  with metadata: family (the model_type), lora_target_modules (comma-separated),
  peft_names (JSON: each lora.* key -> the key PEFT's adapter_model.safetensors uses),
  lora_target_parameters (mixtral) and lora_fan_in_fan_out (gpt2).
The script asserts that each folder, reloaded with AutoModelForCausalLM.from_pretrained,
gives the expected logits.

Generation references, for every variant and for the committed llama, llama3_tied,
llama_linear, llama_dynamic, mistral, qwen2 and qwen3 fixtures (read, not rewritten):
tests/golden/models/<name>_generate.safetensors with
  prompt        (1, 5) int32
  generated     (1, 21) int32  model.generate(prompt, do_sample=False, max_new_tokens=16,
                               min_new_tokens=16, use_cache=True)
  step_logits   (16, vocab) float32  the raw logits generate() chose each new token from
  step_logits_no_cache  the same with use_cache=False, only where the two differ (> 1e-4)
The prompt seed is drawn again until generate() with and without the cache and a plain
argmax over uncached forward passes give the same tokens (so min_new_tokens never had to
suppress eos), no step's best two logits are within 5e-3, and preferably the 16 new tokens
hold at least 6 distinct ones. Every sliding window here (5) is shorter than 21.

Weights: norm scales 1 + 0.1 randn (Gemma's RMSNorm multiplies by 1 + w, so 0.1 randn there),
biases 0.1 randn, embeddings and lm_head 0.35 randn, other weights 0.15 randn, with the
per-variant overrides in VARIANTS (gemma2's q/k so that the soft caps bite; a decisive Mixtral
router). The script prints the softmax's largest probability to show it is not one-hot.

Saved layouts (H = 32 hidden, I = 48 intermediate, 4 heads of 8, 2 kv heads, vocab 128;
per layer N unless marked; W.{weight,bias} means both):

phi, phi_qk_layernorm (PhiForCausalLM, Phi-2; 2 layers)
    model.embed_tokens.weight (128, 32); lm_head.{weight (128, 32), bias (128)} (untied)
    model.final_layernorm.{weight,bias} (32)
    model.layers.N.input_layernorm.{weight,bias} (32)
    model.layers.N.self_attn.q_proj.{weight (32, 32), bias (32)}
    model.layers.N.self_attn.k_proj.{weight (16, 32), bias (16)}, v_proj the same
    model.layers.N.self_attn.dense.{weight (32, 32), bias (32)}     (the output projection)
    model.layers.N.mlp.fc1.{weight (48, 32), bias (48)}, mlp.fc2.{weight (32, 48), bias (32)}
    phi_qk_layernorm adds model.layers.N.self_attn.{q,k}_layernorm.{weight,bias} (8)
  config: partial_rotary_factor 0.5 (in rope_parameters), rope_theta 1e4, hidden_act
  gelu_new (tanh approximation), layer_norm_eps 1e-5, qk_layernorm.
  One LayerNorm feeds attention and MLP in parallel: h = x + attn(ln(x)) + mlp(ln(x)).
  Partial rotary: only the first int(8 * 0.5) = 4 dims of each q/k head rotate, neox style
  (rotate_half over those 4: pairs (0, 2), (1, 3)), inv_freq = theta^(-2i/4) (the rotary dim,
  not head_dim, in the exponent); dims 4..7 pass through. qk_layernorm: a LayerNorm over
  head_dim (8), shared by all heads, on q and k after the projection and before rope.
  Attention scale head_dim^-0.5. 2 kv heads (GQA), which PhiAttention supports.
  LoRA targets q_proj, v_proj, dense, fc1.

phi3 (Phi3ForCausalLM; 2 layers)
    model.embed_tokens.weight (128, 32); lm_head.weight (128, 32); model.norm.weight (32)
    model.layers.N.input_layernorm.weight, post_attention_layernorm.weight (32)
    model.layers.N.self_attn.qkv_proj.weight (64, 32)  rows [q 0:32 | k 32:48 | v 48:64]
    model.layers.N.self_attn.o_proj.weight (32, 32)
    model.layers.N.mlp.gate_up_proj.weight (96, 32)    rows [gate 0:48 | up 48:96];
                                                       down(up * silu(gate))
    model.layers.N.mlp.down_proj.weight (32, 48)
  No biases; rope_theta 1e4, default rope; pad_token_id null, eos 2.
  LoRA targets qkv_proj, o_proj, gate_up_proj, down_proj.

phi3_longrope: phi3's layout without lm_head (tie_word_embeddings true). rope_parameters
  {rope_type/type "longrope", short_factor [3], long_factor [3], partial_rotary_factor 0.75,
  original_max_position_embeddings 8}; top level also original_max_position_embeddings 8,
  partial_rotary_factor 0.75, max_position_embeddings 64. int(8 * 0.75) = 6 dims rotate
  (neox halves of 3: pairs (0, 3), (1, 4), (2, 5)); dims 6, 7 pass; 3 factors (validate_rope
  wants int(head_dim * partial_rotary_factor) // 2). inv_freq[i] = 1 / (f[i] * theta^(2i/6)).
  What transformers does:
  * Each forward picks ONE factor set for all its positions: long if max(position_ids) + 1 >
    original_max_position_embeddings (strictly), else short. So the 12-token ids here use the
    long factors throughout; a sequence of 8 or fewer tokens uses the short ones.
  * cos and sin are multiplied by attention_factor = sqrt(1 + ln(64/8) / ln 8) = sqrt(2)
    (factor = max_position_embeddings / original_max_position_embeddings) in BOTH regimes: it
    is fixed at init, only inv_freq switches.
  * A plain forward with a cache does not re-rotate cached keys. But
    Phi3ForCausalLM.prepare_inputs_for_generation drops the cache when the sequence first
    reaches original_max_position_embeddings + 1 tokens (past length <= 8), so generate()
    recomputes the whole sequence (all 9 positions, long factors) in that step and decodes
    on with long factors. Cached and uncached generate() therefore agree to ~1e-6.
  In the generate reference the steps with 5..8 tokens (step_logits[0:4]) use the short
  factors and the rest the long ones, so the short path is covered there and no separate
  short-factor variant is written.
  LoRA targets qkv_proj, o_proj, gate_up_proj, down_proj.

gpt2 (GPT2LMHeadModel; n_embd 32, n_layer 2, n_head 4, n_positions 64, n_inner null -> 4 * 32)
    transformer.wte.weight (128, 32) (also the head: tied, no lm_head tensor)
    transformer.wpe.weight (64, 32) learned absolute positions, added to wte
    transformer.h.N.ln_1.{weight,bias} (32), ln_2.{weight,bias} (32)
    transformer.h.N.attn.c_attn.{weight (32, 96), bias (96)}   columns [q | k | v]
    transformer.h.N.attn.c_proj.{weight (32, 32), bias (32)}
    transformer.h.N.mlp.c_fc.{weight (32, 128), bias (128)}
    transformer.h.N.mlp.c_proj.{weight (128, 32), bias (32)}
    transformer.ln_f.{weight,bias} (32)
  Conv1D weights are (in, out): y = x @ W + b (the transpose of nn.Linear). gelu_new,
  layer_norm_epsilon 1e-5, scale_attn_weights (head_dim^-0.5), bos = eos = 127, dropouts 0.
  LoRA targets c_attn and c_proj (which matches attn.c_proj and mlp.c_proj) with
  fan_in_fan_out=True (PEFT needs it for Conv1D); PEFT's adapter shapes are still
  A (r, in), B (out, r) and the forward adds scale * x A^T B^T; fan_in_fan_out only
  transposes the delta when merged into the (in, out) weight.

gpt2_bare: gpt2's weights as the original gpt2 / DialoGPT Hub files hold them, written with
  save_file: GPT2Model's state dict without the "transformer." prefix and without lm_head
  (wte.weight, wpe.weight, h.N.*, ln_f.*), plus h.N.attn.bias (1, 1, 64, 64) float32
  lower-triangular ones (transformers 5 has no such buffer and skips it on loading).
  config.json is gpt2's. Its expected file is gpt2's with the grad.* keys renamed to these
  names; the lora.* keys keep GPT2LMHeadModel's module paths (transformer.h.N...), which is
  what PEFT uses whichever file the model came from.

gemma2 (Gemma2ForCausalLM; 2 layers, head_dim 8)
    model.embed_tokens.weight (128, 32) (tied head); model.norm.weight (32)
    model.layers.N.input_layernorm, post_attention_layernorm, pre_feedforward_layernorm,
      post_feedforward_layernorm .weight (32)
    model.layers.N.self_attn.q_proj (32, 32), k_proj (16, 32), v_proj (16, 32), o_proj (32, 32)
    model.layers.N.mlp.gate_proj (48, 32), up_proj (48, 32), down_proj (32, 48)   (.weight)
  config: query_pre_attn_scalar 16, attn_logit_softcapping 50, final_logit_softcapping 30,
  sliding_window 5, layer_types [sliding_attention, full_attention] (the default: even layer
  indices slide), hidden_activation gelu_pytorch_tanh, rms_norm_eps 1e-6, rope_theta 1e4 for
  every layer, pad 0 / eos 1 / bos 2.
  * embeddings are multiplied by sqrt(hidden_size) (a tensor of the weight dtype: in
    bfloat16 sqrt(3072) becomes 55.5); the tied head uses the unscaled matrix.
  * RMSNorm: x * rsqrt(mean(x^2) + eps) * (1 + w), computed in float32.
  * sandwich norms: x + post_attention_norm(attn(input_norm(x))), then
    x + post_feedforward_norm(mlp(pre_feedforward_norm(x))); mlp = down(gelu_tanh(gate) * up).
  * scores = q.k * query_pre_attn_scalar^-0.5 (0.25 here, not head_dim^-0.5), then
    50 * tanh(scores / 50), then the mask, softmax in float32; logits = 30 * tanh(logits / 30)
    (the loss is taken on the capped logits). The script checks that the largest |score| and
    |logit| before the caps are a good part of the caps (0.52 and 0.28 of them here).
  * sliding window in eager attention: query i sees key j iff i - 5 < j <= i, i.e. 5 keys
    including itself; the sliding layers' cache keeps the last window - 1 = 4 tokens.
  LoRA targets q_proj, v_proj, gate_proj.

gemma3_text (Gemma3ForCausalLM with Gemma3TextConfig; 3 layers, head_dim 8)
    gemma2's layout plus model.layers.N.self_attn.q_norm.weight, k_norm.weight (8)
  config: layer_types [sliding_attention, full_attention, sliding_attention] (also
  sliding_window_pattern 2, which transformers 5 only uses when layer_types is absent; it
  also saves a private "_sliding_window_pattern"), sliding_window 5, rope_parameters
  {full_attention: rope_theta 1e6, sliding_attention: rope_theta 1e4} (transformers 5's
  per-layer-type form of rope_theta / rope_local_base_freq), query_pre_attn_scalar 16,
  final_logit_softcapping and attn_logit_softcapping null.
  As gemma2 (sqrt(hidden) embedding scale, 1 + w norms, sandwich norms, same window rule),
  plus q_norm / k_norm: (1 + w) RMSNorms over head_dim, shared by the heads, applied after
  the projections and before rope; sliding layers rotate with theta 1e4, full ones with 1e6.
  LoRA targets q_proj, k_proj, v_proj, o_proj.

mixtral (MixtralForCausalLM; 4 experts, top 2, router_aux_loss_coef 0.02, no sliding window,
rope_theta 1e6)
  transformers 5 (5.23 and 5.25 alike) holds the experts fused in memory,
    model.layers.N.mlp.gate.weight (4, 32)                   the router
    model.layers.N.mlp.experts.gate_up_proj (4, 96, 32)      rows [gate 0:48 | up 48:96]
    model.layers.N.mlp.experts.down_proj (4, 32, 48)
  but save_pretrained converts back to the Hub's per-expert layout, which is what mixtral/
  holds:
    model.layers.N.block_sparse_moe.gate.weight (4, 32)
    model.layers.N.block_sparse_moe.experts.E.w1.weight (48, 32)   gate
    model.layers.N.block_sparse_moe.experts.E.w3.weight (48, 32)   up
    model.layers.N.block_sparse_moe.experts.E.w2.weight (32, 48)   down
    model.layers.N.self_attn.{q,k,v,o}_proj.weight, input_layernorm, post_attention_layernorm
    model.embed_tokens.weight, model.norm.weight, lm_head.weight (untied)
  Router: softmax of x W_gate^T over all 4 experts (float32), top 2, renormalised to sum 1;
  expert e: w2(silu(w1 x) * w3 x).
  loss (output_router_logits=False, the config default) has no aux term. With
  output_router_logits=True the model returns aux_loss and loss_with_aux = loss + 0.02 *
  aux_loss, where aux_loss = E * sum_e f_e * P_e over the rows of ALL layers pooled (not a
  mean of per-layer losses): f_e = top-2 assignments to e / rows, P_e = mean router
  probability of e (so sum_e f_e = 2; 2.0 when balanced). Recorded: aux_loss, loss_with_aux,
  grad_with_aux.<router> (the router gradient of loss_with_aux).
  LoRA: q_proj, v_proj and, via PEFT 0.21's target_parameters ["mlp.experts.gate_up_proj",
  "mlp.experts.down_proj"], the fused experts. PEFT wraps the experts module twice
  (ParamWrapper; the first listed is innermost) and names the adapters
    base_model.model.model.layers.N.mlp.experts.base_layer.lora_{A,B}.weight  gate_up_proj
    base_model.model.model.layers.N.mlp.experts.lora_{A,B}.weight             down_proj
  stored here as lora.model.layers.N.mlp.experts.gate_up_proj.lora_A (16, 32), lora_B (96, 16)
  and lora.model.layers.N.mlp.experts.down_proj.lora_A (16, 48), lora_B (32, 16): one
  matrix pair for all experts, with rank r * E. Expert e's delta (out, in) is
  scale * B[:, e::E] @ A[e*r:(e+1)*r, :], i.e. A's rows are expert-major but B's columns are
  rank-major (column k*E + e is rank k of expert e); the script asserts this against PEFT's
  get_delta_weight.
mixtral_legacy: the same weights in the per-expert layout, written directly with save_file
  (asserted identical to what save_pretrained wrote); config.json and expected file as
  mixtral's.
mixtral_fused: the same weights in transformers' fused in-memory layout (which
  from_pretrained also loads as is); its expected file has the whole fused gradients:
  grad.model.layers.0.mlp.gate.weight, grad.model.layers.0.mlp.experts.gate_up_proj,
  grad.model.layers.1.mlp.experts.down_proj, grad_with_aux.model.layers.0.mlp.gate.weight.

lfm2 (Lfm2ForCausalLM; 4 layers, layer_types [conv, full_attention, conv, full_attention],
full_attn_idxs [1, 3])
    model.embed_tokens.weight (128, 32) (tied head)
    model.embedding_norm.weight (32)   despite the name, the FINAL norm, after the last layer
    model.layers.N.operator_norm.weight (32) (before conv / attention), ffn_norm.weight (32)
    model.layers.N.feed_forward.w1 (40, 32) gate, w3 (40, 32) up, w2 (32, 40) down; SwiGLU
    conv layers:
      model.layers.N.conv.in_proj.weight (96, 32)  rows [B 0:32 | C 32:64 | x 64:96]
      model.layers.N.conv.conv.weight (32, 1, 3)   depthwise causal conv, kernel conv_L_cache
      model.layers.N.conv.out_proj.weight (32, 32)
    attention layers:
      model.layers.N.self_attn.q_proj (32, 32), k_proj (16, 32), v_proj (16, 32),
      out_proj (32, 32) (.weight), q_layernorm.weight, k_layernorm.weight (8)
  config: conv_L_cache 3, conv_bias false, norm_eps 1e-5, rope_theta 1e6,
  block_auto_adjust_ff_dim true, block_ffn_dim_multiplier 1.0, block_multiple_of 20: the
  MLP width is int(2 * 48 / 3) = 32, times 1.0, rounded up to a multiple of 20 = 40.
  Conv block: (B, C, x) = split(in_proj(h)); u = B * x; y[c, t] = sum_k w[c, 0, k] *
  u[c, t - 2 + k] (zeros before the start, so w[..., 2] weighs the current token);
  out = out_proj(C * y). Cache: per conv layer a state of the last conv_L_cache = 3 values of
  u (B * x, not h), zero-filled for shorter prompts; a decode step convolves [state, u_t] and
  keeps the last output, so only the newest 2 stored values and u_t matter.
  Attention: q_layernorm / k_layernorm are plain RMSNorms (weight, not 1 + w) over head_dim,
  after the projections and before rope; output projection named out_proj.
  LoRA targets q_proj, v_proj, in_proj, out_proj (matching both the conv block's and the
  attention's out_proj), w1.

Existing fixtures: llama_dynamic's dynamic NTK rope recomputes inv_freq for the current
length but, unlike phi3, keeps the cached keys, so cached and uncached generation logits
differ (~0.2 here; for some prompts the tokens too). Its generate file holds both
step_logits (cached, what generate(use_cache=True) does) and step_logits_no_cache; the prompt
was chosen so that the tokens agree.

Pad tokens: nn.Embedding(padding_idx=pad_token_id) gives the pad row a zero gradient
(gemma2, gemma3_text, lfm2 have pad 0); none of the recorded gradients is an embedding with a
pad row.
"""

import json
import math
import os
import re
import shutil
import struct
import sys

import torch
import transformers
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
from safetensors import safe_open
from safetensors.torch import load_file, save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models")

VOCAB = 128
LORA_RANK, LORA_ALPHA = 4, 8.0
PROMPT_LEN, NEW_TOKENS = 5, 16
# Greedy steps whose best and second-best logits are closer than this are treated as
# ties, and the prompt is drawn again.
TIE_MARGIN = 5e-3
# Random tiny models like to repeat one token; prompts are drawn until the 16 new tokens
# hold at least this many distinct ones (or the most varied of the first 60 is kept).
MIN_DISTINCT = 6

COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
)


def factors(seed, n):
    """n LongRoPE rescale factors drawn from [1, 4]."""
    gen = torch.Generator().manual_seed(seed)
    return [round(1.0 + 3.0 * float(x), 4) for x in torch.rand(n, generator=gen)]


def phi3_longrope_fields():
    # head_dim 8 and partial_rotary_factor 0.75 rotate 6 dims: 3 factors each
    # (Phi3Config.validate_rope wants int(head_dim * partial_rotary_factor) // 2).
    return dict(
        COMMON,
        rms_norm_eps=1e-5,
        original_max_position_embeddings=8,
        partial_rotary_factor=0.75,
        rope_theta=10000.0,
        rope_scaling=dict(type="longrope", short_factor=factors(11, 3), long_factor=factors(12, 3)),
        tie_word_embeddings=True,
        pad_token_id=None,
        eos_token_id=2,
    )


PHI3_GRADS = [
    "model.layers.0.self_attn.qkv_proj.weight",
    "model.layers.1.mlp.gate_up_proj.weight",
]

# name -> how to build it.
#   config   the family's config class        fields   its keyword arguments
#   targets  PEFT target_modules              grads    saved parameter names to record
#   scales   [(substring of a parameter name, std)] overriding the default draw
#   params   PEFT target_parameters (fused 3-D expert weights)
VARIANTS = {
    # Phi-2: parallel attention and MLP off one LayerNorm, partial rotary, gelu_new,
    # biases everywhere, untied lm_head with bias.
    "phi": dict(
        config=transformers.PhiConfig,
        fields=dict(COMMON, hidden_act="gelu_new", layer_norm_eps=1e-5, partial_rotary_factor=0.5,
                    rope_theta=10000.0, tie_word_embeddings=False),
        targets=["q_proj", "v_proj", "dense", "fc1"],
        grads=["model.layers.0.self_attn.dense.weight", "model.layers.1.mlp.fc1.weight",
               "model.final_layernorm.weight"],
    ),
    "phi_qk_layernorm": dict(
        config=transformers.PhiConfig,
        fields=dict(COMMON, hidden_act="gelu_new", layer_norm_eps=1e-5, partial_rotary_factor=0.5,
                    rope_theta=10000.0, tie_word_embeddings=False, qk_layernorm=True),
        targets=["q_proj", "v_proj", "dense", "fc1"],
        grads=["model.layers.0.self_attn.q_layernorm.weight", "model.layers.1.self_attn.k_layernorm.bias",
               "model.layers.0.self_attn.dense.weight", "model.layers.1.mlp.fc1.weight"],
    ),
    "phi3": dict(
        config=transformers.Phi3Config,
        fields=dict(COMMON, rms_norm_eps=1e-5, original_max_position_embeddings=64, rope_theta=10000.0,
                    pad_token_id=None, eos_token_id=2),
        targets=["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
        grads=PHI3_GRADS + ["model.layers.0.mlp.down_proj.weight"],
    ),
    # LongRoPE with original_max_position_embeddings 8: a forward whose largest position + 1
    # exceeds 8 (the 12-token test sequence) uses the long factors at every position, a
    # shorter one the short factors; cos and sin carry sqrt(1 + ln(64/8) / ln 8) = sqrt(2)
    # either way. generate() recomputes the cache when the sequence first passes 8 tokens.
    "phi3_longrope": dict(
        config=transformers.Phi3Config,
        fields=phi3_longrope_fields(),
        targets=["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
        grads=PHI3_GRADS + ["model.embed_tokens.weight"],
    ),
    "gpt2": dict(
        config=transformers.GPT2Config,
        fields=dict(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64, n_inner=None,
                    activation_function="gelu_new", layer_norm_epsilon=1e-5, resid_pdrop=0.0,
                    embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=VOCAB - 1, eos_token_id=VOCAB - 1,
                    tie_word_embeddings=True),
        targets=["c_attn", "c_proj"],
        fan_in_fan_out=True,
        grads=["transformer.h.0.attn.c_attn.weight", "transformer.wpe.weight",
               "transformer.h.1.mlp.c_fc.weight"],
    ),
    "gemma2": dict(
        config=transformers.Gemma2Config,
        fields=dict(COMMON, head_dim=8, hidden_activation="gelu_pytorch_tanh", rms_norm_eps=1e-6,
                    query_pre_attn_scalar=16, sliding_window=5, attn_logit_softcapping=50.0,
                    final_logit_softcapping=30.0, rope_theta=10000.0, tie_word_embeddings=True),
        targets=["q_proj", "v_proj", "gate_proj"],
        # Larger q, k and embeddings so that both soft caps bite (see check_softcaps).
        scales=[("q_proj", 0.5), ("k_proj", 0.5), ("embed_tokens", 0.3)],
        grads=["model.layers.0.pre_feedforward_layernorm.weight", "model.layers.0.self_attn.q_proj.weight",
               "model.layers.1.post_feedforward_layernorm.weight", "model.layers.1.mlp.gate_proj.weight"],
        zero_centered_norms=True,
    ),
    "gemma3_text": dict(
        config=transformers.Gemma3TextConfig,
        fields=dict(COMMON, num_hidden_layers=3, head_dim=8, hidden_activation="gelu_pytorch_tanh",
                    rms_norm_eps=1e-6, query_pre_attn_scalar=16, sliding_window=5,
                    layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                    sliding_window_pattern=2,
                    rope_parameters={
                        "full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
                        "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                    },
                    final_logit_softcapping=None, attn_logit_softcapping=None, tie_word_embeddings=True),
        targets=["q_proj", "k_proj", "v_proj", "o_proj"],
        scales=[("embed_tokens", 0.2)],
        grads=["model.layers.0.self_attn.q_norm.weight", "model.layers.1.self_attn.k_norm.weight",
               "model.layers.2.self_attn.k_proj.weight", "model.layers.1.mlp.down_proj.weight"],
        zero_centered_norms=True,
    ),
    "mixtral": dict(
        config=transformers.MixtralConfig,
        fields=dict(COMMON, rms_norm_eps=1e-5, num_local_experts=4, num_experts_per_tok=2,
                    sliding_window=None, router_aux_loss_coef=0.02, rope_theta=1000000.0),
        targets=["q_proj", "v_proj"],
        params=["mlp.experts.gate_up_proj", "mlp.experts.down_proj"],
        # A router drawn wider than the default, so that no token sits near a top-2
        # boundary (check_router asserts it).
        scales=[("mlp.gate.", 0.3)],
        grads=["model.layers.0.block_sparse_moe.gate.weight",
               "model.layers.0.block_sparse_moe.experts.1.w1.weight",
               "model.layers.0.block_sparse_moe.experts.1.w3.weight",
               "model.layers.1.block_sparse_moe.experts.2.w2.weight"],
    ),
    "lfm2": dict(
        config=transformers.Lfm2Config,
        fields=dict(COMMON, num_hidden_layers=4, norm_eps=1e-5, conv_L_cache=3, conv_bias=False,
                    layer_types=["conv", "full_attention", "conv", "full_attention"],
                    full_attn_idxs=[1, 3], block_multiple_of=20, block_ffn_dim_multiplier=1.0,
                    block_auto_adjust_ff_dim=True, rope_theta=1000000.0, tie_word_embeddings=True),
        targets=["q_proj", "v_proj", "in_proj", "out_proj", "w1"],
        scales=[("conv.conv.weight", 0.5)],
        grads=["model.layers.0.conv.conv.weight", "model.layers.0.conv.in_proj.weight",
               "model.layers.1.self_attn.q_layernorm.weight", "model.layers.2.feed_forward.w1.weight"],
    ),
}

# The committed fixtures of make_model_fixtures.py that get generation references too.
EXISTING = ["llama", "llama3_tied", "llama_linear", "llama_dynamic", "mistral", "qwen2", "qwen3"]


# Embeddings and heads are drawn wider than the other weights so that the next-token
# distributions are far from uniform (but not one-hot).
HEAD_SCALES = [("embed_tokens", 0.35), ("wte", 0.35), ("lm_head.weight", 0.35)]


def randomize(model, seed, scales=(), zero_centered_norms=False):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            std = next((s for key, s in list(scales) + HEAD_SCALES if key in name), None)
            if std is not None:
                p.copy_(std * noise)
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            elif "norm" in name or re.search(r"(^|\.)ln_", name):
                # Gemma's RMSNorm multiplies by (1 + w): keep the factor near one there too.
                p.copy_(0.1 * noise if zero_centered_norms else 1.0 + 0.1 * noise)
            else:
                p.copy_(0.15 * noise)


def save(tensors, path, metadata):
    """save_file, then the header's metadata in sorted order: safetensors writes it in a
    per-process random order, which would make every regeneration differ byte-wise."""
    save_file(tensors, path, metadata)
    with open(path, "r+b") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        text = json.dumps(header, separators=(",", ":")).encode()
        assert len(text) <= size, (len(text), size)
        f.seek(8)
        f.write(text + b" " * (size - len(text)))


def saved_names(path):
    with safe_open(path, "pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


def layer_layout(names):
    """The saved tensors outside the layers and those of the first layer of each kind."""
    rows, seen = [], set()
    for key in sorted(names):
        m = re.search(r"(^|\.)(layers|h)\.(\d+)\.", key)
        if m is None:
            rows.append((key, names[key]))
            continue
        index = int(m.group(3))
        prefix = key[: m.end()]
        kind = tuple(sorted(re.sub(r"^.*?(layers|h)\.\d+\.", "", k) for k in names
                            if k.startswith(prefix)))
        if kind in seen and not any(r[0].startswith(prefix) for r in rows):
            continue
        seen.add(kind)
        rows.append((key, names[key]))
    return rows


def print_layout(name, path):
    print(f"  {name}: saved tensors (outside the layers, and one layer of each kind):")
    for key, shape in layer_layout(saved_names(path)):
        print(f"    {key} {list(shape)}")


# ---- Mixtral: transformers keeps the experts fused in memory -------------------------------
#   model.layers.N.mlp.gate.weight                (E, H)
#   model.layers.N.mlp.experts.gate_up_proj       (E, 2I, H)  rows [0, I) gate, [I, 2I) up
#   model.layers.N.mlp.experts.down_proj          (E, H, I)
# and save_pretrained writes them back in the Hub's per-expert layout:
#   model.layers.N.block_sparse_moe.gate.weight           (E, H)
#   model.layers.N.block_sparse_moe.experts.e.w1.weight   (I, H)  gate
#   model.layers.N.block_sparse_moe.experts.e.w3.weight   (I, H)  up
#   model.layers.N.block_sparse_moe.experts.e.w2.weight   (H, I)  down

LEGACY = re.compile(r"model\.layers\.(\d+)\.block_sparse_moe\.(gate\.weight|experts\.(\d+)\.(w[123])\.weight)$")


def mixtral_legacy_from_fused(name, fused, inter):
    """The legacy tensor `name` cut out of the fused state dict (or gradients) `fused`."""
    m = LEGACY.match(name)
    if m is None:
        return fused[name]
    layer = m.group(1)
    if m.group(2) == "gate.weight":
        return fused[f"model.layers.{layer}.mlp.gate.weight"]
    expert, which = int(m.group(3)), m.group(4)
    if which == "w2":
        return fused[f"model.layers.{layer}.mlp.experts.down_proj"][expert]
    gate_up = fused[f"model.layers.{layer}.mlp.experts.gate_up_proj"][expert]
    return gate_up[:inter] if which == "w1" else gate_up[inter:]


def mixtral_legacy_state(fused, inter):
    """The per-expert (Hub) state dict from the fused one."""
    out = {}
    for key, value in fused.items():
        m = re.match(r"model\.layers\.(\d+)\.mlp\.(gate\.weight|experts\.(gate_up_proj|down_proj))$", key)
        if m is None:
            out[key] = value
            continue
        base = f"model.layers.{m.group(1)}.block_sparse_moe"
        if m.group(2) == "gate.weight":
            out[f"{base}.gate.weight"] = value
        elif m.group(3) == "down_proj":
            for e in range(value.shape[0]):
                out[f"{base}.experts.{e}.w2.weight"] = value[e]
        else:
            for e in range(value.shape[0]):
                out[f"{base}.experts.{e}.w1.weight"] = value[e, :inter]
                out[f"{base}.experts.{e}.w3.weight"] = value[e, inter:]
    return {k: v.clone().contiguous() for k, v in out.items()}


def mixtral_fused_name(name):
    """The fused parameter holding legacy tensor `name`."""
    m = LEGACY.match(name)
    if m is None:
        return name
    if m.group(2) == "gate.weight":
        return f"model.layers.{m.group(1)}.mlp.gate.weight"
    part = "down_proj" if m.group(4) == "w2" else "gate_up_proj"
    return f"model.layers.{m.group(1)}.mlp.experts.{part}"


def grad_of(model, name):
    """The gradient of saved parameter `name`, whatever the in-memory layout."""
    params = dict(model.named_parameters())
    if name in params:
        return params[name].grad
    grads = {k: p.grad for k, p in params.items() if p.grad is not None}
    return mixtral_legacy_from_fused(name, grads, model.config.intermediate_size)


# ---- LoRA --------------------------------------------------------------------------------------

def lora_outputs(model, ids, seed, spec):
    config = LoraConfig(r=LORA_RANK, lora_alpha=LORA_ALPHA, lora_dropout=0.0,
                        target_modules=spec["targets"], target_parameters=spec.get("params"),
                        fan_in_fan_out=spec.get("fan_in_fan_out", False))
    peft_model = get_peft_model(model, config)
    peft_model.train(False)
    gen = torch.Generator().manual_seed(seed)
    adapters, peft_names = {}, {}
    with torch.no_grad():
        for path, module in peft_model.base_model.model.named_modules():
            if hasattr(module, "lora_A") and "default" in module.lora_A:
                a = module.lora_A["default"].weight
                b = module.lora_B["default"].weight
                a.copy_(0.2 * torch.randn(a.shape, generator=gen))
                b.copy_(0.2 * torch.randn(b.shape, generator=gen))
                key = path
                if hasattr(module, "parameter_name"):  # PEFT's ParamWrapper around a 3-D parameter
                    key = path.replace(".base_layer", "") + "." + module.parameter_name
                adapters[key] = (a, b)
                peft_names[f"lora.{key}.lora_A"] = f"base_model.model.{path}.lora_A.weight"
                peft_names[f"lora.{key}.lora_B"] = f"base_model.model.{path}.lora_B.weight"
    for path, module in peft_model.base_model.model.named_modules():
        if hasattr(module, "parameter_name") and "default" in module.lora_A:
            check_expert_delta(module)
    state = get_peft_model_state_dict(peft_model)
    assert set(peft_names.values()) == set(state), (sorted(state), peft_names)
    out = peft_model(input_ids=ids, labels=ids)
    out.loss.backward()
    tensors = {
        "lora_logits": out.logits.detach().float().contiguous(),
        "lora_loss": out.loss.detach().float(),
    }
    for key, (a, b) in adapters.items():
        tensors[f"lora.{key}.lora_A"] = a.detach().clone()
        tensors[f"lora.{key}.lora_B"] = b.detach().clone()
        tensors[f"lora_grad.{key}.lora_A"] = a.grad.detach().clone()
        tensors[f"lora_grad.{key}.lora_B"] = b.grad.detach().clone()
        assert a.grad.abs().max() > 0 and b.grad.abs().max() > 0, key
    return tensors, peft_names


def check_expert_delta(module):
    """PEFT's delta for a fused (E, out, in) expert parameter: expert e uses the rows
    [e*r, (e+1)*r) of lora_A (E*r, in) and the columns e, e+E, e+2E, ... of lora_B (out, E*r)."""
    a = module.lora_A["default"].weight
    b = module.lora_B["default"].weight
    experts, r = module.num_experts, module.r["default"]
    scale = module.scaling["default"]
    with torch.no_grad():
        mine = torch.stack([scale * b[:, e::experts] @ a[e * r:(e + 1) * r] for e in range(experts)])
        theirs = module.get_delta_weight("default")
    assert mine.shape == module.get_param().shape, (mine.shape, module.get_param().shape)
    assert torch.allclose(mine, theirs, atol=1e-6), float((mine - theirs).abs().max())


# ---- Checks ------------------------------------------------------------------------------------

def report_softmax(name, logits):
    p = torch.softmax(logits.double(), -1).max(-1).values
    print(f"  {name}: max softmax prob per position: mean {p.mean():.3f}, largest {p.max():.3f}")
    assert p.max() < 0.99, "saturated logits"


def check_softcaps(model, ids):
    """Largest |attention score| and |logit| before Gemma 2's soft caps, as fractions of the caps."""
    module = transformers.models.gemma2.modeling_gemma2
    original = module.eager_attention_forward
    peak = [0.0]

    def measuring(mod, query, key, value, attention_mask, scaling=None, **kwargs):
        k = module.repeat_kv(key, mod.num_key_value_groups)
        scores = torch.matmul(query, k.transpose(2, 3)) * scaling
        if attention_mask is not None:
            allowed = attention_mask if attention_mask.dtype == torch.bool else attention_mask == 0
            scores = scores * allowed
        peak[0] = max(peak[0], float(scores.abs().max()))
        return original(mod, query, key, value, attention_mask, scaling=scaling, **kwargs)

    cap = model.config.final_logit_softcapping
    module.eager_attention_forward = measuring
    model.config.final_logit_softcapping = None
    try:
        with torch.no_grad():
            raw = model(input_ids=ids).logits
    finally:
        module.eager_attention_forward = original
        model.config.final_logit_softcapping = cap
    attn = peak[0] / model.config.attn_logit_softcapping
    final = float(raw.abs().max()) / cap
    print(f"  largest |score| before the attention cap: {attn:.2f} of the cap; "
          f"largest |logit| before the final cap: {final:.2f} of the cap")
    assert attn > 0.3 and final > 0.2, "soft caps do not bite"


def check_router(model, ids):
    with torch.no_grad():
        out = model(input_ids=ids, output_router_logits=True)
    gaps = []
    for logits in out.router_logits:
        z = logits.float().sort(-1, descending=True).values
        gaps.append(float((z[:, 1] - z[:, 2]).min()))
    print(f"  smallest gap between the 2nd and 3rd router logits, per layer: "
          f"{', '.join(f'{g:.4f}' for g in gaps)}")
    assert min(gaps) > 1e-3, "near-tie in top-2 routing"


def greedy(model, prompt):
    """Greedy continuation by full forward passes without a cache, and the smallest margin."""
    seq, margin = prompt, math.inf
    with torch.no_grad():
        for _ in range(NEW_TOKENS):
            logits = model(input_ids=seq, use_cache=False).logits[0, -1].double()
            top = torch.topk(logits, 2)
            margin = min(margin, float(top.values[0] - top.values[1]))
            seq = torch.cat([seq, top.indices[:1].view(1, 1)], dim=1)
    return seq, margin


def generate(model, prompt, use_cache):
    """generate()'s greedy tokens and the raw logits it picked them from, (NEW_TOKENS, vocab)."""
    eos = model.generation_config.eos_token_id
    eos = eos[0] if isinstance(eos, list) else eos
    with torch.no_grad():
        out = model.generate(prompt, do_sample=False, max_new_tokens=NEW_TOKENS,
                             min_new_tokens=NEW_TOKENS, use_cache=use_cache,
                             pad_token_id=eos if eos is not None else 0,
                             return_dict_in_generate=True, output_logits=True)
    return out.sequences, torch.cat(out.logits).float()


def generation_reference(name, model, seed):
    """A prompt whose cached greedy continuation equals the uncached one and has no ties;
    among the first prompts that qualify, one whose continuation repeats itself least."""
    model.train(False)
    best = None
    for attempt in range(60):
        gen = torch.Generator().manual_seed(seed + attempt)
        prompt = torch.randint(0, VOCAB, (1, PROMPT_LEN), generator=gen)
        cached, cached_logits = generate(model, prompt, use_cache=True)
        distinct = len(set(cached[0, PROMPT_LEN:].tolist()))
        if best is not None and distinct <= best[0]:
            continue  # would not be kept
        uncached, uncached_logits = generate(model, prompt, use_cache=False)
        manual, margin = greedy(model, prompt)
        problems = []
        if not torch.equal(uncached, manual):
            problems.append("generate(use_cache=False) differs from plain argmax (eos suppressed?)")
        if not torch.equal(cached, uncached):
            problems.append("use_cache=True and use_cache=False continuations differ")
        if margin < TIE_MARGIN:
            problems.append(f"near-tie (margin {margin:.2e})")
        if problems:
            print(f"  {name}: ERROR for prompt seed {seed + attempt}: {'; '.join(problems)}; drawing another")
            continue
        result = {"prompt": prompt.to(torch.int32), "generated": cached.to(torch.int32),
                  "step_logits": cached_logits.contiguous()}
        step_diff = float((cached_logits - uncached_logits).abs().max())
        if step_diff > 1e-4:
            result["step_logits_no_cache"] = uncached_logits.contiguous()
        best = (distinct, seed + attempt, margin, step_diff, result)
        if distinct >= MIN_DISTINCT:
            break
    if best is None:
        raise RuntimeError(f"{name}: no usable generation prompt")
    distinct, used, margin, step_diff, result = best
    print(f"  {name}: generation prompt seed {used}, {distinct} distinct new tokens, smallest greedy "
          f"margin {margin:.3f}, cached vs uncached step logits differ by {step_diff:.1e}")
    return result


def load(folder):
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager",
                                                              dtype=torch.float32)
    model.train(False)
    return model


def assert_reload(folder, ids, logits):
    with torch.no_grad():
        again = load(folder)(input_ids=ids).logits
    diff = float((again - logits).abs().max())
    assert diff < 1e-5, f"{folder}: reloaded logits differ by {diff}"
    return diff


def write_generate(name, tensors, family):
    save(tensors, os.path.join(OUT, name + "_generate.safetensors"), {"family": family})


# ---- Main --------------------------------------------------------------------------------------

def make_variant(index, name, spec):
    print(name)
    config = spec["config"](**spec["fields"])
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager").float()
    randomize(model, 7000 + index, spec.get("scales", ()), spec.get("zero_centered_norms", False))
    model.train(False)
    folder = os.path.join(OUT, name)
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder, safe_serialization=True)
    saved = saved_names(os.path.join(folder, "model.safetensors"))
    print_layout(name, os.path.join(folder, "model.safetensors"))

    gen = torch.Generator().manual_seed(8000 + index)
    ids = torch.randint(0, VOCAB, (2, 12), generator=gen)
    family = model.config.model_type
    if family == "gemma2":
        check_softcaps(model, ids)
    kwargs = {}
    if family == "mixtral":
        check_router(model, ids)
        kwargs["output_router_logits"] = False
    out = model(input_ids=ids, labels=ids, **kwargs)
    out.loss.backward()
    report_softmax(name, out.logits.detach())
    tensors = {
        "ids": ids.to(torch.int32),
        "logits": out.logits.detach().float().contiguous(),
        "loss": out.loss.detach().float(),
    }
    for g in spec["grads"]:
        assert g in saved, f"{g} is not in the saved file"
        grad = grad_of(model, g)
        assert grad is not None and grad.abs().max() > 0, f"no gradient for {g}"
        tensors["grad." + g] = grad.detach().float().clone().contiguous()
    params = dict(model.named_parameters())
    if family == "mixtral":
        # For mixtral_fused: the whole fused gradients behind the legacy names above.
        fused_grads = {"grad." + mixtral_fused_name(g): params[mixtral_fused_name(g)].grad.detach().clone()
                       for g in spec["grads"]}
    model.zero_grad()

    if family == "mixtral":
        # The same loss with the router's load-balancing term:
        # loss_with_aux = loss + router_aux_loss_coef * aux_loss.
        aux = model(input_ids=ids, labels=ids, output_router_logits=True)
        aux.loss.backward()
        expected = out.loss + model.config.router_aux_loss_coef * aux.aux_loss
        assert torch.allclose(aux.loss, expected), (aux.loss, expected)
        tensors["aux_loss"] = aux.aux_loss.detach().float()
        tensors["loss_with_aux"] = aux.loss.detach().float()
        router = spec["grads"][0]
        tensors["grad_with_aux." + router] = grad_of(model, router).detach().float().clone().contiguous()
        fused_grads["grad_with_aux." + mixtral_fused_name(router)] = tensors["grad_with_aux." + router]
        print(f"  aux_loss {float(aux.aux_loss.detach()):.6f}, loss {float(out.loss.detach()):.6f}, "
              f"loss_with_aux {float(aux.loss.detach()):.6f}")
        model.zero_grad()
    # The base weights, before PEFT wraps the model.
    base_state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}

    diff = assert_reload(folder, ids, tensors["logits"])
    generation = generation_reference(name, load(folder), 9000 + 100 * index)
    write_generate(name, generation, family)

    lora, peft_names = lora_outputs(model, ids, 10000 + index, spec)
    tensors.update(lora)
    metadata = {
        "family": family,
        "lora_target_modules": ",".join(spec["targets"]),
        "peft_names": json.dumps(peft_names, sort_keys=True),
    }
    if spec.get("params"):
        metadata["lora_target_parameters"] = ",".join(spec["params"])
    if spec.get("fan_in_fan_out"):
        metadata["lora_fan_in_fan_out"] = "true"
    save(tensors, os.path.join(OUT, name + "_expected.safetensors"), metadata)
    lora_keys = sorted(k for k in tensors if k.startswith("lora.") and (".layers.0." in k or ".h.0." in k))
    print("  LoRA tensors of layer 0:", ", ".join(f"{k} {list(tensors[k].shape)}" for k in lora_keys))
    print(f"  loss {float(out.loss.detach()):.6f}, lora_loss {float(tensors['lora_loss']):.6f}, "
          f"reload max diff {diff:.1e}")

    if name == "gpt2":
        make_gpt2_bare(folder, config, base_state, tensors, metadata, generation)
    if name == "mixtral":
        make_mixtral_layouts(folder, config, base_state, fused_grads, tensors, metadata, generation)


def derived_folder(name, source):
    folder = os.path.join(OUT, name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for f in ("config.json", "generation_config.json"):
        shutil.copy(os.path.join(source, f), os.path.join(folder, f))
    return folder


def check_derived(name, folder, tensors, generation, family):
    diff = assert_reload(folder, tensors["ids"].long(), tensors["logits"])
    model = load(folder)
    cached, logits = generate(model, generation["prompt"].long(), use_cache=True)
    assert torch.equal(cached.to(torch.int32), generation["generated"]), name
    assert float((logits - generation["step_logits"]).abs().max()) < 1e-5, name
    write_generate(name, generation, family)
    print(f"  {name}: reload max diff {diff:.1e}, same generation")


def make_gpt2_bare(source, config, base_state, tensors, metadata, generation):
    """gpt2's weights as the original gpt2 / DialoGPT files hold them: GPT2Model's state dict
    (no `transformer.` prefix, no lm_head) plus each layer's causal-mask buffer h.N.attn.bias,
    (1, 1, n_positions, n_positions) lower-triangular float32, which transformers 5 no longer
    has and skips on loading."""
    name = "gpt2_bare"
    print(name)
    folder = derived_folder(name, source)
    state = {k[len("transformer."):]: v for k, v in base_state.items() if k.startswith("transformer.")}
    n = config.n_positions
    mask = torch.tril(torch.ones(n, n, dtype=torch.float32)).view(1, 1, n, n)
    for i in range(config.n_layer):
        state[f"h.{i}.attn.bias"] = mask.clone()
    reference = load_file(os.path.join(source, "model.safetensors"))
    weights = [k for k in state if not re.fullmatch(r"h\.\d+\.attn\.bias", k)]
    assert {"transformer." + k for k in weights} == set(reference)
    for key in weights:
        assert torch.equal(state[key], reference["transformer." + key]), key
    save(state, os.path.join(folder, "model.safetensors"), {"format": "pt"})
    print_layout(name, os.path.join(folder, "model.safetensors"))
    # Same outputs; the gradients under the names this file uses. The LoRA module paths stay
    # GPT2LMHeadModel's (transformer.h.N...), which is what PEFT names them whichever file
    # the model was loaded from.
    renamed = {(k.replace("grad.transformer.", "grad.") if k.startswith("grad.") else k): v
               for k, v in tensors.items()}
    save(renamed, os.path.join(OUT, name + "_expected.safetensors"), metadata)
    check_derived(name, folder, tensors, generation, "gpt2")


def make_mixtral_layouts(source, config, fused_state, fused_grads, tensors, metadata, generation):
    legacy = mixtral_legacy_state(fused_state, config.intermediate_size)
    reference = load_file(os.path.join(source, "model.safetensors"))
    assert set(legacy) == set(reference), set(legacy) ^ set(reference)
    for key, value in legacy.items():
        assert torch.equal(value, reference[key]), key

    # The Hub's per-expert layout, written directly (save_pretrained writes the same tensors).
    name = "mixtral_legacy"
    print(name)
    folder = derived_folder(name, source)
    save(legacy, os.path.join(folder, "model.safetensors"), {"format": "pt"})
    print_layout(name, os.path.join(folder, "model.safetensors"))
    save(tensors, os.path.join(OUT, name + "_expected.safetensors"), metadata)
    check_derived(name, folder, tensors, generation, "mixtral")

    # transformers' in-memory fused layout, which it also loads as is.
    name = "mixtral_fused"
    print(name)
    folder = derived_folder(name, source)
    save(fused_state, os.path.join(folder, "model.safetensors"), {"format": "pt"})
    print_layout(name, os.path.join(folder, "model.safetensors"))
    renamed = {k: v for k, v in tensors.items() if not k.startswith(("grad.", "grad_with_aux."))}
    renamed.update({k: v.float().contiguous() for k, v in fused_grads.items()})
    save(renamed, os.path.join(OUT, name + "_expected.safetensors"), metadata)
    check_derived(name, folder, tensors, generation, "mixtral")


def make_gemma3_multimodal():
    """gemma3: the multimodal Gemma3ForConditionalGeneration (model_type "gemma3", the text
    model's fields under text_config) holding gemma3_text's weights as its language model,
    beside a tiny random vision tower and projector that text-only inputs never reach. Its
    logits and greedy generation must be gemma3_text's, which is what the test compares
    (gemma3_text_expected / _generate), so it writes no expected tensors of its own."""
    name = "gemma3"
    print(name)
    text = load(os.path.join(OUT, "gemma3_text"))
    vision = transformers.SiglipVisionConfig(hidden_size=16, intermediate_size=32,
                                             num_hidden_layers=1, num_attention_heads=2,
                                             image_size=32, patch_size=16)
    config = transformers.Gemma3Config(text_config=text.config.to_dict(),
                                       vision_config=vision.to_dict(), mm_tokens_per_image=4)
    torch.manual_seed(31)
    model = transformers.Gemma3ForConditionalGeneration(config).float()
    missing = model.model.language_model.load_state_dict(text.model.state_dict(), strict=True)
    assert not missing.missing_keys and not missing.unexpected_keys, missing
    model.lm_head.weight = model.model.language_model.embed_tokens.weight
    model.train(False)
    folder = os.path.join(OUT, name)
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder, safe_serialization=True)
    print_layout(name, os.path.join(folder, "model.safetensors"))
    again = transformers.Gemma3ForConditionalGeneration.from_pretrained(
        folder, attn_implementation="eager", dtype=torch.float32)
    again.train(False)
    expected = load_file(os.path.join(OUT, "gemma3_text_expected.safetensors"))
    generation = load_file(os.path.join(OUT, "gemma3_text_generate.safetensors"))
    with torch.no_grad():
        logits = again(input_ids=expected["ids"].long()).logits
    diff = float((logits - expected["logits"]).abs().max())
    assert diff < 1e-5, diff
    cached, _ = generate(again, generation["prompt"].long(), use_cache=True)
    assert torch.equal(cached.to(torch.int32), generation["generated"]), name
    print(f"  {name}: logits equal gemma3_text's within {diff:.1e}, same generation")


def main(only=()):
    torch.manual_seed(0)
    for index, (name, spec) in enumerate(VARIANTS.items()):
        if not only or name in only:
            make_variant(index, name, spec)
    if not only or "gemma3" in only:
        make_gemma3_multimodal()
    for index, name in enumerate(EXISTING):
        if only and name not in only:
            continue
        folder = os.path.join(OUT, name)
        model = load(folder)
        generation = generation_reference(name, model, 20000 + 100 * index)
        write_generate(name, generation, model.config.model_type)


if __name__ == "__main__":
    main(sys.argv[1:])

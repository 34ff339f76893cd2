"""Gemma 3 (text): Gemma with QK-norm, RMSNorms on both sides of attention and of the MLP, and
interleaved local (sliding-window) and global attention layers, each kind with its own RoPE base.

litert-torch's TransformerBlock normalizes after the attention residual, and its DecoderOnlyModel
gives every layer the same RoPE and mask; Gemma 3 needs neither, so this family has its own block
and decoder. Both are made of the building blocks' parts under the building blocks' names, so the
loader, the KV cache and the export see the same model interface as DecoderOnlyModel.
"""

import dataclasses
from typing import Any, Mapping

import torch
from torch import nn

from litezoo.core.families import hf as hf_config
from litezoo.core.families import llama

TENSOR_NAMES = dataclasses.replace(
    llama.TIED_TENSOR_NAMES,
    attn_query_norm="model.layers.{}.self_attn.q_norm",
    attn_key_norm="model.layers.{}.self_attn.k_norm",
    pre_ff_norm="model.layers.{}.pre_feedforward_layernorm",
    post_ff_norm="model.layers.{}.post_feedforward_layernorm",
)

GLOBAL = "full_attention"
LOCAL = "sliding_attention"


def layer_types(hf: Mapping[str, Any]) -> list[str]:
  """Each layer's attention, read as transformers reads it: `layer_types`, else every
  `sliding_window_pattern`-th layer global and the others local."""
  count = hf["num_hidden_layers"]
  types = hf.get("layer_types")
  if types is None:
    pattern = hf.get("sliding_window_pattern") or 6
    types = [GLOBAL if (i + 1) % pattern == 0 else LOCAL for i in range(count)]
  if len(types) != count or set(types) - {GLOBAL, LOCAL}:
    raise ValueError(f"layer_types must be {count} of {GLOBAL!r} or {LOCAL!r}, got {types}")
  return list(types)


def rope_bases(hf: Mapping[str, Any]) -> dict[str, float]:
  """The RoPE base of each layer type: from transformers 5's per-type `rope_parameters`, else
  from the published config.json's `rope_theta` (global) and `rope_local_base_freq` (local)."""
  if hf.get("rope_scaling"):
    raise ValueError(f"RoPE scaling {hf['rope_scaling']} is not supported")
  published = {GLOBAL: hf.get("rope_theta") or 1e6, LOCAL: hf.get("rope_local_base_freq") or 1e4}
  params = hf.get("rope_parameters") or {}
  bases = {}
  for kind, default in published.items():
    rope = params.get(kind) or {}
    if rope.get("rope_type", "default") != "default":
      raise ValueError(f"RoPE type {rope['rope_type']!r} of {kind} layers is not supported")
    bases[kind] = float(rope.get("rope_theta") or default)
  return bases


def _check_supported(hf: Mapping[str, Any]) -> None:
  """Raises on config fields that change the model in ways this family does not build. None is set
  in the text-only Gemma 3 checkpoints (270M, 1B); the larger, multimodal ones scale global RoPE,
  and 27B's query_pre_attn_scalar differs from its head_dim."""
  if hf.get("final_logit_softcapping") or hf.get("attn_logit_softcapping"):
    raise ValueError("logit soft-capping is not supported")
  if hf.get("use_bidirectional_attention"):
    raise ValueError("bidirectional attention is not supported")
  if not hf.get("tie_word_embeddings", True):
    raise ValueError("an LM head separate from the embedding is not supported")
  # The building blocks' attention scales scores by head_dim**-0.5, and offers no other scale.
  if hf.get("query_pre_attn_scalar", 256) != hf_config.head_dim(hf):
    raise ValueError(f"query_pre_attn_scalar ({hf.get('query_pre_attn_scalar', 256)}) must equal "
                     f"head_dim ({hf_config.head_dim(hf)})")


def model_config(hf: Mapping[str, Any]):
  """The litert-torch ModelConfig of a Gemma 3 text `config.json` (model_type gemma3_text)."""
  from litezoo.core.litert_api import cfg  # pylint: disable=g-import-not-at-top
  _check_supported(hf)
  # Gemma scales by (1 + weight), in every norm including QK-norm.
  norm = cfg.NormalizationConfig(type=cfg.NormalizationType.RMS_NORM, epsilon=hf["rms_norm_eps"],
                                 zero_centered=True)
  bases = rope_bases(hf)
  heads = hf["num_attention_heads"]
  bias = hf.get("attention_bias", False)
  ff = cfg.FeedForwardConfig(
      type=cfg.FeedForwardType.GATED,
      activation=hf_config.activation(hf.get("hidden_activation") or "gelu_pytorch_tanh"),
      intermediate_size=hf["intermediate_size"],
      pre_ff_norm_config=norm,
      post_ff_norm_config=norm,
  )

  def block(kind: str):
    local = kind == LOCAL
    return cfg.TransformerBlockConfig(
        attn_config=cfg.AttentionConfig(
            num_heads=heads,
            head_dim=hf_config.head_dim(hf),
            num_query_groups=hf.get("num_key_value_heads") or heads,
            rotary_base=bases[kind],
            rotary_percentage=1.0,
            # Split the fused projection into heads before QK-norm, so it normalizes each head;
            # the projection is then all queries, all keys, all values (not interleaved).
            qkv_transpose_before_split=True,
            qkv_fused_interleaved=False,
            qkv_use_bias=bias,
            output_proj_use_bias=bias,
            query_norm_config=norm,
            key_norm_config=norm,
            attn_type=cfg.AttentionType.LOCAL_SLIDING if local else cfg.AttentionType.GLOBAL,
            sliding_window_size=hf["sliding_window"] if local else None,
        ),
        ff_config=ff,
        pre_attention_norm_config=norm,
        post_attention_norm_config=norm,
    )

  blocks = [block(kind) for kind in layer_types(hf)]
  return cfg.ModelConfig(
      **hf_config.sizes(hf),
      embedding_scale=hf["hidden_size"]**0.5,
      block_configs=blocks,
      final_norm_config=norm,
      lm_head_share_weight_with_embedding=True,
      attention_patterns=[b.attn_config.attn_type for b in blocks],
  )


def _layers():
  """litert-torch's attention and builder modules.

  Imported only when a model is built (the Generative API takes seconds to import), and after
  litezoo.core.litert_api (the one place that imports the Generative API).
  """
  from litezoo.core.litert_api import attention, builder  # pylint: disable=g-import-not-at-top
  return attention, builder


class Block(nn.Module):
  """One Gemma 3 layer: x + norm(attention(norm(x))), then x + norm(mlp(norm(x))).

  The parts and names of litert-torch's TransformerBlock (which normalizes after the residual add
  instead); a sibling rather than a subclass, so that importing this family stays cheap.
  """

  def __init__(self, config, model_config):
    super().__init__()
    attention, builder = _layers()
    dim = model_config.embedding_dim
    self.config = config
    self.pre_atten_norm = builder.build_norm(dim, config.pre_attention_norm_config)
    self.atten_func = attention.CausalSelfAttention(dim, config.attn_config,
                                                    model_config.enable_hlfb)
    self.post_atten_norm = builder.build_norm(dim, config.post_attention_norm_config)
    self.ff = builder.build_ff(dim, config.ff_config)  # holds the pre- and post-MLP norms

  def forward(self, x, rope, mask, input_pos, kv_cache):
    # x: [B, T, dim]; mask: [B, 1, T, S]; kv_cache: this layer's entry, S slots long.
    attn, kv_cache = self.atten_func(self.pre_atten_norm(x), rope, mask, input_pos, kv_cache)
    x = x + self.post_atten_norm(attn)
    return x + self.ff(x), kv_cache


def _window_mask(causal: torch.Tensor, input_pos: torch.Tensor, window: int,
                 value: float) -> torch.Tensor:
  """The causal mask [B, 1, T, S] also hiding keys `window` or more positions behind the query,
  as transformers' sliding window does (a query sees itself and the window - 1 keys before it)."""
  key_pos = torch.arange(causal.shape[-1], dtype=input_pos.dtype)
  too_far = input_pos[:, None] - key_pos[None, :] >= window  # [T, S]
  return causal.masked_fill(too_far, value)


class Decoder(nn.Module):
  """Gemma 3's decoder with the interface of litert-torch's DecoderOnlyModel: the same attributes
  and `forward(tokens, input_pos, kv_cache, mask=None, export_config=None)`."""

  def __init__(self, config, mask_cache_size: int):
    super().__init__()
    from litezoo.core.litert_api import cfg  # pylint: disable=g-import-not-at-top
    _, builder = _layers()
    self.config = config
    self.tok_embedding = nn.Embedding(config.vocab_size, config.embedding_dim)
    self.lm_head = nn.Linear(config.embedding_dim, config.vocab_size, bias=False)
    # One Parameter, not two sharing storage: counted, loaded and exported once.
    self.lm_head.weight = self.tok_embedding.weight
    self.transformer_blocks = nn.ModuleList(
        Block(config.block_config(i), config) for i in range(config.num_layers))
    self.final_norm = builder.build_norm(config.embedding_dim, config.final_norm_config)
    # Row p of [1, 1, size, size] hides the cache slots after position p.
    causal = torch.full((mask_cache_size, mask_cache_size), config.causal_mask_value).triu(1)
    self.register_buffer("mask_cache", causal[None, None], persistent=False)
    # Each layer's (RoPE base, sliding window or None for global attention).
    attns = [config.block_config(i).attn_config for i in range(config.num_layers)]
    self.layer_kinds = [
        (a.rotary_base,
         a.sliding_window_size if a.attn_type == cfg.AttentionType.LOCAL_SLIDING else None)
        for a in attns]

  @torch.inference_mode()
  def forward(self, tokens, input_pos, kv_cache, mask=None, export_config=None):
    # tokens: [1, T] int32; input_pos: [T] int32, the positions of the tokens in the cache.
    x = self.tok_embedding(tokens) * self.config.embedding_scale
    if mask is None:
      mask = self.mask_cache.index_select(2, input_pos)[:, :, :, :kv_cache.get_max_seq_len()]
    # Built once per RoPE base and per window (dict.fromkeys: unique, in a fixed order, so the
    # exported graph is the same every time), shared by the layers of that kind.
    head_dim = self.config.block_config(0).attn_config.head_dim
    ropes = {base: self.config.build_rope(input_pos, head_dim, base)
             for base in dict.fromkeys(base for base, _ in self.layer_kinds)}
    masks = {window: mask if window is None else
                     _window_mask(mask, input_pos, window, self.config.causal_mask_value)
             for window in dict.fromkeys(window for _, window in self.layer_kinds)}
    entries = []
    for block, entry, (base, window) in zip(self.transformer_blocks, kv_cache.caches,
                                            self.layer_kinds):
      x, entry = block(x, ropes[base], masks[window], input_pos, entry)
      entries.append(entry)
    kv_cache = dataclasses.replace(kv_cache, caches=tuple(entries))
    if (export_config is not None and not export_config.output_logits_on_prefill
        and input_pos.numel() > 1):
      return {"kv_cache": kv_cache}
    return {"logits": self.lm_head(self.final_norm(x)), "kv_cache": kv_cache}


def build(hf: Mapping[str, Any], kv_cache_max_len: int) -> nn.Module:
  return Decoder(model_config(hf), kv_cache_max_len).eval()

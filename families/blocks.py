"""Building blocks beyond litert-torch's: a decoder whose layers may differ in RoPE (base, or none
at all) and attention window, a block whose norms sit before, around or after attention and MLP,
RoPE scalings (linear, Llama 3, LongRoPE), QK-norm over all heads, a query scale other than
head_dim ** -0.5, residual and logit multipliers and final-logit soft-capping.

Made of litert-torch's parts under litert-torch's names, so the loader, the KV cache and the
export see the interface of litert-torch's DecoderOnlyModel:
`forward(tokens [1, T] int32, input_pos [T] int32, kv_cache, mask=None, export_config=None)`.
"""

import dataclasses
import math
from typing import Any, Mapping

import torch
from torch import nn


def _layers():
  """litert-torch's attention and builder modules.

  Imported only when a model is built (the Generative API takes seconds to import), and after
  litezoo.conversion.litert (the one place that imports the Generative API).
  """
  from litezoo.conversion.litert import attention, builder  # pylint: disable=g-import-not-at-top
  return attention, builder


def norm_config(kind: str, epsilon: float, zero_centered: bool = False):
  """litert-torch's NormalizationConfig of an "rms" or "layer" norm, built from plain ops.

  With its default (`enable_hlfb=True`) litert-torch wraps every norm in an `odml.rms_norm` (or
  layer norm) composite, which the converter keeps as a STABLEHLO_COMPOSITE op calling a small
  subgraph of its own (61 per signature on SmolLM2 135M, 854 in its 14-signature file). XNNPACK
  cannot take those, so each norm splits a signature's XNNPACK partitions and runs through the
  interpreter. The plain ops (MEAN, RSQRT, MUL) compute the same and are delegated: SmolLM2 135M
  int8 decodes 1.19x faster and peaks 32 MiB lower (docs/speed.md, "Norms as plain ops").
  """
  from litezoo.conversion.litert import cfg  # pylint: disable=g-import-not-at-top
  types = {"rms": cfg.NormalizationType.RMS_NORM, "layer": cfg.NormalizationType.LAYER_NORM}
  return cfg.NormalizationConfig(type=types[kind], epsilon=epsilon, zero_centered=zero_centered,
                                 enable_hlfb=False)


@dataclasses.dataclass(frozen=True)
class RopeSpec:
  """One RoPE: base, rotated dimensions of a head, scaling type and its parameters."""

  theta: float
  dim: int
  kind: str = "default"  # default, linear, llama3, longrope
  params: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def inverse_frequencies(spec: RopeSpec) -> tuple[torch.Tensor, float]:
  """(inverse frequencies [dim / 2] float32, factor on cos and sin), computed as transformers'
  rope initialisers compute them (float32, the same operation order)."""
  p = spec.params
  exponents = torch.arange(0, spec.dim, 2, dtype=torch.int64).float() / spec.dim
  if spec.kind == "longrope":  # the short factors: the KV cache stays within the original length
    original = p["original_max_position_embeddings"]
    factor = p.get("factor") or p["max_position_embeddings"] / original
    scaling = p.get("attention_factor")
    if scaling is None:
      scaling = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(original))
    short = torch.tensor(p["short_factor"], dtype=torch.float32)
    return 1.0 / (short * spec.theta**exponents), float(scaling)
  inv_freq = 1.0 / (spec.theta**exponents)
  if spec.kind == "linear":
    return inv_freq / p["factor"], 1.0
  if spec.kind == "llama3":
    factor, low, high = p["factor"], p["low_freq_factor"], p["high_freq_factor"]
    old = p["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old / low, old / high
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, scaled), 1.0
  if spec.kind != "default":
    raise ValueError(f"RoPE type {spec.kind!r} is not implemented")
  return inv_freq, 1.0


class Rope(nn.Module):
  """cos and sin [1, T, dim / 2] of positions [T] (what litert-torch's apply_rope takes)."""

  def __init__(self, spec: RopeSpec):
    super().__init__()
    inv_freq, self.scaling = inverse_frequencies(spec)
    self.register_buffer("inv_freq", inv_freq, persistent=False)

  def forward(self, input_pos):
    radians = input_pos.float()[None, :, None] * self.inv_freq[None, None, :]
    cos, sin = torch.cos(radians), torch.sin(radians)
    if self.scaling != 1.0:
      cos, sin = cos * self.scaling, sin * self.scaling
    return cos, sin


@dataclasses.dataclass(frozen=True)
class Plan:
  """What a decoder adds to litert-torch's configs (families/decoder.py fills it in)."""

  rope: RopeSpec
  layer_rope: tuple[bool, ...]  # per layer: whether it rotates queries and keys
  placement: str = "pre"  # "pre", "sandwich" or "post" (families/decoder.py PLACEMENTS)
  qk_norm: str | None = None  # "head" (litert-torch's own) or "full" (over all heads)
  query_scale: float | None = None  # queries times this (scores: scale * head_dim ** -0.5)
  residual_multiplier: float = 1.0
  logits_scaling: float = 1.0


def _norm_class():
  from litezoo.conversion.litert import builder  # pylint: disable=g-import-not-at-top
  return builder.normalization.RMSNorm


class FlatRMSNorm(nn.Module):
  """RMSNorm over all heads of a [B, T, heads, head_dim] projection (OLMo 2's QK-norm normalizes
  the whole projection before the split into heads); one `weight` [heads * head_dim]."""

  def __init__(self, size: int, norm_config):
    super().__init__()
    self.norm = _norm_class()(size, eps=norm_config.epsilon,
                              zero_centered_gamma=norm_config.zero_centered,
                              enable_hlfb=norm_config.enable_hlfb)
    self.weight = self.norm.weight

  def forward(self, x):
    shape = x.shape
    return self.norm(x.reshape(*shape[:-2], -1)).reshape(shape)


class _QueryScale(nn.Module):
  """The query (after its parameter-free norm slot) times a constant: attention then scales the
  scores by `factor * head_dim ** -0.5` (Gemma 2's query_pre_attn_scalar, Granite's
  attention_multiplier) without a copy of litert-torch's attention."""

  def __init__(self, inner, factor: float):
    super().__init__()
    self.inner, self.factor = inner, factor

  def forward(self, q):
    return self.inner(q) * self.factor


class Block(nn.Module):
  """One layer from litert-torch's parts under their names; where its norms sit:

  - "sandwich" (Gemma 2 and 3): x + norm(attention(norm(x))), then x + norm(mlp(norm(x)));
  - "post" (OLMo 2): x + norm(attention(x)), then x + norm(mlp(x));
  - "pre" (Llama): x + attention(norm(x)), then x + mlp(norm(x)), the second norm in
    litert-torch's `post_atten_norm` slot as its TransformerBlock has it.

  A sibling of litert-torch's TransformerBlock rather than a subclass, so that importing this
  family stays cheap.
  """

  def __init__(self, config, model_config, plan: Plan | None = None):
    super().__init__()
    attention, builder = _layers()
    dim = model_config.embedding_dim
    self.config = config
    self.placement = plan.placement if plan else "sandwich"
    self.residual = plan.residual_multiplier if plan else 1.0
    self.pre_atten_norm = builder.build_norm(dim, config.pre_attention_norm_config)
    self.atten_func = attention.CausalSelfAttention(dim, config.attn_config,
                                                    model_config.enable_hlfb)
    self.post_atten_norm = builder.build_norm(dim, config.post_attention_norm_config)
    self.ff = builder.build_ff(dim, config.ff_config)  # holds the pre- and post-MLP norms
    attn = config.attn_config
    if plan and plan.qk_norm == "full":
      norm = config.post_attention_norm_config  # the model's RMSNorm settings
      self.atten_func.query_norm = FlatRMSNorm(attn.num_heads * attn.head_dim, norm)
      self.atten_func.key_norm = FlatRMSNorm(attn.num_query_groups * attn.head_dim, norm)
    if plan and plan.query_scale is not None and plan.query_scale != 1.0:
      if isinstance(self.atten_func.query_norm, nn.Module):
        raise ValueError("a query scale with a query norm is not implemented")
      self.atten_func.query_norm = _QueryScale(self.atten_func.query_norm, plan.query_scale)

  def _scaled(self, x):
    return x if self.residual == 1.0 else x * self.residual

  def forward(self, x, rope, mask, input_pos, kv_cache):
    # x: [B, T, dim]; mask: [B, 1, T, S]; kv_cache: this layer's entry, S slots long.
    attn, kv_cache = self.atten_func(self.pre_atten_norm(x), rope, mask, input_pos, kv_cache)
    if self.placement == "pre":
      x = x + self._scaled(attn)
      return x + self._scaled(self.ff(self.post_atten_norm(x))), kv_cache
    x = x + self._scaled(self.post_atten_norm(attn))
    return x + self._scaled(self.ff(x)), kv_cache


def _window_mask(causal: torch.Tensor, input_pos: torch.Tensor, window: int,
                 value: float) -> torch.Tensor:
  """The causal mask [B, 1, T, S] also hiding keys `window` or more positions behind the query,
  as transformers' sliding window does (a query sees itself and the window - 1 keys before it)."""
  key_pos = torch.arange(causal.shape[-1], dtype=input_pos.dtype)
  too_far = input_pos[:, None] - key_pos[None, :] >= window  # [T, S]
  return causal.masked_fill(too_far, value)


class Decoder(nn.Module):
  """A decoder with the interface of litert-torch's DecoderOnlyModel: the same attributes
  and `forward(tokens, input_pos, kv_cache, mask=None, export_config=None)`.

  Without a `plan` (Gemma 3) each layer's RoPE is litert-torch's of its attention config's base;
  with one, the plan's RoPE for the layers it marks, none for the others.
  """

  def __init__(self, config, mask_cache_size: int, plan: Plan | None = None):
    super().__init__()
    from litezoo.conversion.litert import cfg  # pylint: disable=g-import-not-at-top
    _, builder = _layers()
    self.config = config
    self.plan = plan
    self.tok_embedding = nn.Embedding(config.vocab_size, config.embedding_dim)
    self.lm_head = nn.Linear(config.embedding_dim, config.vocab_size,
                             bias=config.lm_head_use_bias)
    if config.lm_head_share_weight_with_embedding:
      # One Parameter, not two sharing storage: counted, loaded and exported once.
      self.lm_head.weight = self.tok_embedding.weight
    self.transformer_blocks = nn.ModuleList(
        Block(config.block_config(i), config, plan) for i in range(config.num_layers))
    self.final_norm = builder.build_norm(config.embedding_dim, config.final_norm_config)
    # Row p of [1, 1, size, size] hides the cache slots after position p.
    causal = torch.full((mask_cache_size, mask_cache_size), config.causal_mask_value).triu(1)
    self.register_buffer("mask_cache", causal[None, None], persistent=False)
    # Each layer's (RoPE: its base, or with a plan whether it rotates; sliding window or None).
    attns = [config.block_config(i).attn_config for i in range(config.num_layers)]
    self.layer_kinds = [
        (a.rotary_base if plan is None else plan.layer_rope[i],
         a.sliding_window_size if a.attn_type == cfg.AttentionType.LOCAL_SLIDING else None)
        for i, a in enumerate(attns)]
    self.rope = Rope(plan.rope) if plan is not None else None

  def _ropes(self, input_pos):
    """RoPE key -> (cos, sin) or None."""
    if self.plan is not None:
      rope = self.rope(input_pos) if any(self.plan.layer_rope) else None
      return {True: rope, False: None}
    # Built once per RoPE base (dict.fromkeys: unique, in a fixed order, so the exported graph is
    # the same every time), shared by the layers of that kind.
    head_dim = self.config.block_config(0).attn_config.head_dim
    return {base: self.config.build_rope(input_pos, head_dim, base)
            for base in dict.fromkeys(base for base, _ in self.layer_kinds)}

  @torch.inference_mode()
  def forward(self, tokens, input_pos, kv_cache, mask=None, export_config=None):
    # tokens: [1, T] int32; input_pos: [T] int32, the positions of the tokens in the cache.
    x = self.tok_embedding(tokens)
    if self.config.embedding_scale not in (None, 1.0):
      x = x * self.config.embedding_scale
    if mask is None:
      mask = self.mask_cache.index_select(2, input_pos)[:, :, :, :kv_cache.get_max_seq_len()]
    ropes = self._ropes(input_pos)
    masks = {window: mask if window is None else
                     _window_mask(mask, input_pos, window, self.config.causal_mask_value)
             for window in dict.fromkeys(window for _, window in self.layer_kinds)}
    entries = []
    for block, entry, (rope, window) in zip(self.transformer_blocks, kv_cache.caches,
                                            self.layer_kinds):
      x, entry = block(x, ropes[rope], masks[window], input_pos, entry)
      entries.append(entry)
    kv_cache = dataclasses.replace(kv_cache, caches=tuple(entries))
    if (export_config is not None and not export_config.output_logits_on_prefill
        and input_pos.numel() > 1):
      return {"kv_cache": kv_cache}
    logits = self.lm_head(self.final_norm(x))
    if self.plan is not None and self.plan.logits_scaling != 1.0:
      logits = logits / self.plan.logits_scaling
    cap = self.config.final_logit_softcap
    if cap is not None:
      logits = torch.tanh(logits / cap) * cap
    return {"logits": logits, "kv_cache": kv_cache}

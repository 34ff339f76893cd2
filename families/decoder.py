"""A configurable decoder: what the Llama lineage's families share, as data.

Mistral, Qwen 2/3, Gemma 2, Phi-3, SmolLM3, OLMo 2 and Granite differ from Llama in a handful of
switches (biases, QK-norm, where the norms sit, soft-capping, sliding windows, which layers rotate,
how RoPE is scaled, multipliers, fused projections). `Config` holds those switches under the
`config.json` names that set them; each family module only reads its config into one (through
`families.base.Reader`, which refuses what it does not read) and names its llama.cpp tensors.
`build` makes the model from litert-torch's building blocks plus families/blocks.py.

Importing this module costs no torch.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Mapping

from litezoo.core.spec import TensorNames, UnsupportedConfigError
from litezoo.families import base

FULL = "full_attention"
SLIDING = "sliding_attention"
# RoPE scalings the zoo computes (families/blocks.py `inverse_frequencies`); others are refused.
ROPE_TYPES = ("default", "linear", "llama3", "longrope")
# Where a block's norms sit: "pre" x + f(norm(x)) (Llama), "sandwich" x + norm(f(norm(x)))
# (Gemma 2), "post" x + norm(f(x)) (OLMo 2).
PLACEMENTS = ("pre", "sandwich", "post")


@dataclasses.dataclass(frozen=True)
class Config:
  """A decoder, fields named as the `config.json` keys that set them (sizes in elements)."""

  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_hidden_layers: int
  num_attention_heads: int
  num_key_value_heads: int
  head_dim: int
  max_position_embeddings: int  # tokens
  rms_norm_eps: float
  hidden_act: str  # transformers' name of the MLP's gate activation
  tie_word_embeddings: bool
  rope_theta: float
  rope_type: str = "default"  # one of ROPE_TYPES
  # The scaling's own parameters (sorted (key, value) pairs, lists as tuples): factor,
  # low/high_freq_factor, original_max_position_embeddings, short/long_factor, attention_factor.
  rope_scaling: tuple[tuple[str, Any], ...] = ()
  partial_rotary_factor: float = 1.0  # the share of each head's dimensions RoPE rotates
  no_rope_layers: tuple[int, ...] = ()  # per layer: 1 rotates, 0 does not (SmolLM3); (): all do
  sliding_windows: tuple[int | None, ...] = ()  # per layer: keys a query sees, itself included
  attention_bias: bool = False  # q/k/v projections have biases
  attention_out_bias: bool = False  # the output projection has one
  mlp_bias: bool = False
  qk_norm: str | None = None  # "head": RMSNorm per head (Qwen3); "full": over all heads (OLMo 2)
  norm_placement: str = "pre"  # one of PLACEMENTS
  zero_centered_norm: bool = False  # RMSNorm scales by (1 + weight) (Gemma)
  embedding_multiplier: float = 1.0  # token embeddings times this
  residual_multiplier: float = 1.0  # attention and MLP outputs times this before the residual
  logits_scaling: float = 1.0  # logits divided by this (Granite)
  attention_multiplier: float | None = None  # the scores' scale; None: head_dim ** -0.5
  attn_logit_softcapping: float | None = None
  final_logit_softcapping: float | None = None
  fused_qkv: bool = False  # one qkv_proj tensor (Phi-3)
  fused_gate_up: bool = False  # one gate_up_proj tensor, gate rows first (Phi-3)

  def rope_parameter(self, key: str, default: Any = None) -> Any:
    return dict(self.rope_scaling).get(key, default)


# --- reading a config.json ---------------------------------------------------------------------


def _hashable(value: Any) -> Any:
  return tuple(value) if isinstance(value, list) else value


# RoPE scaling parameters that must be above 0 where a config gives them.
_POSITIVE_ROPE = ("factor", "low_freq_factor", "high_freq_factor",
                  "original_max_position_embeddings", "attention_factor")


def read_rope(r: base.Reader, config_max_positions: int) -> dict:
  """The rope fields of Config from transformers 5's `rope_parameters` (per layer type only when
  every type has the same), refusing a scaling the zoo does not compute, by name."""
  params = dict(base.rope_parameters(r))
  if params and all(isinstance(v, Mapping) for v in params.values()):
    kinds = [dict(v) for v in params.values()]
    if any(k != kinds[0] for k in kinds):
      raise r.refuse("rope_parameters", "different RoPE per layer type is not implemented for "
                     f"the {r.family} family")
    params = kinds[0]
  rope_type = params.get("rope_type", params.get("type", "default"))
  key = "rope_scaling" if r.given.get("rope_scaling") else "rope_parameters"
  if rope_type not in ROPE_TYPES:
    raise UnsupportedConfigError(
        f"{key}={r.given.get(key)!r}: RoPE type {rope_type!r} is not implemented by the "
        f"{r.family} family (it computes {', '.join(ROPE_TYPES)})")
  theta = base.theta_of(params, r, 10000.0)
  partial = float(params.get("partial_rotary_factor") or r("partial_rotary_factor", 1.0))
  scaling = {k: _hashable(v) for k, v in params.items()
             if k not in ("rope_theta", "rope_type", "type", "partial_rotary_factor")}
  for name in _POSITIVE_ROPE:  # transformers takes a negative factor, and RoPE turns to nonsense
    value = scaling.get(name)
    if value is not None and not (isinstance(value, numbers.Real) and not isinstance(value, bool)
                                  and value > 0):
      raise UnsupportedConfigError(f"{key}={r.given.get(key)!r}: its {name} must be a number "
                                   "above 0")
  if rope_type == "longrope":
    scaling.setdefault("original_max_position_embeddings",
                       r("original_max_position_embeddings") or config_max_positions)
    scaling.setdefault("max_position_embeddings", config_max_positions)
  elif rope_type == "default":
    scaling = {}
  r("original_max_position_embeddings")
  return dict(rope_theta=theta, rope_type=rope_type, rope_scaling=tuple(sorted(scaling.items())),
              partial_rotary_factor=partial)


def read_windows(r: base.Reader, layers: int) -> tuple[int | None, ...]:
  """Each layer's sliding window (None: global), as transformers reads it: `sliding_window` for
  the layers `layer_types` marks sliding (every layer when the config has no layer_types), unless
  `use_sliding_window` is false."""
  window = r("sliding_window")
  use = r("use_sliding_window", True)
  types = r("layer_types")
  r("max_window_layers")  # transformers folds it into layer_types
  if types is not None and (len(types) != layers or set(types) - {FULL, SLIDING}):
    raise r.refuse("layer_types", f"expected {layers} of {FULL!r} or {SLIDING!r}")
  if not window or not use:
    return ()
  windows = tuple(int(window) if types is None or t == SLIDING else None
                  for t in (types or [SLIDING] * layers))
  return windows if any(windows) else ()


def common(r: base.Reader, act_key: str = "hidden_act", act_default: str = "silu",
           windows: bool = True) -> dict:
  """The fields every decoder reads, plus its RoPE and (when its transformers model has them,
  `windows`) its sliding windows: a family without leaves `sliding_window` unread, so that
  `Reader.finish` refuses a config that sets it."""
  heads, kv_heads = base.check_heads(r)
  layers = r.required("num_hidden_layers")
  positions = r.required("max_position_embeddings")
  return dict(
      vocab_size=r.required("vocab_size"), hidden_size=r.required("hidden_size"),
      intermediate_size=r.required("intermediate_size"), num_hidden_layers=layers,
      num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=base.head_dim(r),
      max_position_embeddings=positions, rms_norm_eps=float(r.required("rms_norm_eps")),
      hidden_act=base.activation(r, act_key, act_default),
      tie_word_embeddings=bool(r("tie_word_embeddings", False)),
      sliding_windows=read_windows(r, layers) if windows else (), **read_rope(r, positions))


# --- tensor names -----------------------------------------------------------------------------


def tensor_names(config: Config) -> TensorNames:
  """Hugging Face's names of the Llama lineage, as the config's switches place them."""
  layer = "model.layers.{}."
  fused_qkv = config.fused_qkv
  return TensorNames(
      embedding="model.embed_tokens",
      final_norm="model.norm",
      lm_head=None if config.tie_word_embeddings else "lm_head",
      pre_attn_norm=None if config.norm_placement == "post" else layer + "input_layernorm",
      post_attn_norm=layer + "post_attention_layernorm",
      pre_ff_norm=layer + "pre_feedforward_layernorm" if config.norm_placement == "sandwich"
      else None,
      post_ff_norm=layer + "post_feedforward_layernorm" if config.norm_placement != "pre"
      else None,
      attn_query_proj=None if fused_qkv else layer + "self_attn.q_proj",
      attn_key_proj=None if fused_qkv else layer + "self_attn.k_proj",
      attn_value_proj=None if fused_qkv else layer + "self_attn.v_proj",
      attn_fused_qkv_proj=layer + "self_attn.qkv_proj" if fused_qkv else None,
      attn_query_norm=layer + "self_attn.q_norm" if config.qk_norm else None,
      attn_key_norm=layer + "self_attn.k_norm" if config.qk_norm else None,
      attn_output_proj=layer + "self_attn.o_proj",
      ff_gate_proj=None if config.fused_gate_up else layer + "mlp.gate_proj",
      ff_up_proj=layer + "mlp.up_proj",
      ff_fused_gate_up_proj=layer + "mlp.gate_up_proj" if config.fused_gate_up else None,
      ff_down_proj=layer + "mlp.down_proj",
  )


# --- the model --------------------------------------------------------------------------------


def model_config(config: Config):
  """The litert-torch ModelConfig of a Config (per-layer block configs)."""
  from litezoo.conversion.litert import cfg  # pylint: disable=g-import-not-at-top
  from litezoo.families import blocks, llama  # pylint: disable=g-import-not-at-top
  if config.norm_placement not in PLACEMENTS:
    raise UnsupportedConfigError(f"norm placement {config.norm_placement!r} is not one of "
                                 f"{', '.join(PLACEMENTS)}")
  norm = blocks.norm_config("rms", config.rms_norm_eps, config.zero_centered_norm)
  none = cfg.NormalizationConfig()
  head_norm = norm if config.qk_norm == "head" else none
  # Split the projection into heads before QK-norm (so it sees whole heads), and for a fused
  # checkpoint whose rows are all queries, then all keys, then all values.
  by_heads = bool(config.qk_norm) or config.fused_qkv
  placement = config.norm_placement
  ff = cfg.FeedForwardConfig(
      type=cfg.FeedForwardType.GATED, activation=llama.litert_activation(config.hidden_act),
      intermediate_size=config.intermediate_size, use_bias=config.mlp_bias,
      pre_ff_norm_config=norm if placement == "sandwich" else none,
      post_ff_norm_config=none if placement == "pre" else norm)
  windows = config.sliding_windows or (None,) * config.num_hidden_layers

  def block(window):
    return cfg.TransformerBlockConfig(
        attn_config=cfg.AttentionConfig(
            num_heads=config.num_attention_heads, head_dim=config.head_dim,
            num_query_groups=config.num_key_value_heads, rotary_base=config.rope_theta,
            rotary_percentage=config.partial_rotary_factor,
            qkv_transpose_before_split=by_heads, qkv_fused_interleaved=not by_heads,
            qkv_use_bias=config.attention_bias, output_proj_use_bias=config.attention_out_bias,
            query_norm_config=head_norm, key_norm_config=head_norm,
            logit_softcap=config.attn_logit_softcapping,
            attn_type=cfg.AttentionType.LOCAL_SLIDING if window else cfg.AttentionType.GLOBAL,
            sliding_window_size=window),
        ff_config=ff,
        pre_attention_norm_config=none if placement == "post" else norm,
        # "pre": litert-torch's name for the MLP's input norm; otherwise the attention output's.
        post_attention_norm_config=norm)

  blocks = [block(w) for w in windows]
  return cfg.ModelConfig(
      vocab_size=config.vocab_size, num_layers=config.num_hidden_layers,
      max_seq_len=config.max_position_embeddings, embedding_dim=config.hidden_size,
      embedding_scale=config.embedding_multiplier, block_configs=blocks, final_norm_config=norm,
      lm_head_share_weight_with_embedding=config.tie_word_embeddings,
      final_logit_softcap=config.final_logit_softcapping,
      attention_patterns=[b.attn_config.attn_type for b in blocks],
      # The SDPA composite carries no soft-cap through every runtime: the plain ops do.
      enable_hlfb=config.attn_logit_softcapping is None)


def check_kv_cache(config: Config, kv_cache_max_len: int) -> None:
  """LongRoPE switches to its long factors past original_max_position_embeddings, for every
  position at once (transformers recomputes all of them): a KV cache cannot follow it there."""
  if config.rope_type == "longrope":
    original = int(config.rope_parameter("original_max_position_embeddings"))
    if kv_cache_max_len > original:
      raise UnsupportedConfigError(
          f"kv cache length {kv_cache_max_len} exceeds original_max_position_embeddings="
          f"{original} of this LongRoPE model, past which transformers changes the RoPE of every "
          f"earlier position; pass --kv_cache_max_len={original} or less")


def build(config: Config, kv_cache_max_len: int):
  """The re-authored model: `forward(tokens [1, T] int32, input_pos [T] int32, kv_cache)` ->
  {"logits": [1, T, vocab_size] float32, "kv_cache"}. Raises UnsupportedConfigError for a KV
  cache the RoPE cannot serve."""
  from litezoo.families import blocks  # pylint: disable=g-import-not-at-top
  check_kv_cache(config, kv_cache_max_len)
  head_dim = config.head_dim
  rotated = int(head_dim * config.partial_rotary_factor)
  uses_rope = config.no_rope_layers or (1,) * config.num_hidden_layers
  scale = config.attention_multiplier
  return blocks.Decoder(
      model_config(config), kv_cache_max_len,
      plan=blocks.Plan(
          rope=blocks.RopeSpec(config.rope_theta, rotated, config.rope_type,
                               dict(config.rope_scaling)),
          layer_rope=tuple(bool(u) for u in uses_rope),
          placement=config.norm_placement,
          qk_norm=config.qk_norm,
          query_scale=None if scale is None else scale * math.sqrt(head_dim),
          residual_multiplier=config.residual_multiplier,
          logits_scaling=config.logits_scaling)).eval()


def record(name: str, model_types: tuple[str, ...], read_config, gguf=None,
           litertlm_type: str = "generic_model") -> base.FamilyRecord:
  return base.FamilyRecord(name=name, model_types=model_types, read_config=read_config,
                           build_model=build, names=tensor_names, gguf=gguf,
                           litertlm_type=litertlm_type, check_kv_cache=check_kv_cache)

"""Gemma 3 (text): Gemma with QK-norm, RMSNorms on both sides of attention and of the MLP, and
interleaved local (sliding-window) and global attention layers, each kind with its own RoPE base.

litert-torch's TransformerBlock normalizes after the attention residual, and its DecoderOnlyModel
gives every layer the same RoPE and mask; Gemma 3 needs neither, so it is built from the zoo's
own blocks (families/blocks.py), made of the building blocks' parts under their names.
"""

import dataclasses
from typing import Any, Mapping

from litezoo.core.spec import TensorNames
from litezoo.families import base, llama

GLOBAL = "full_attention"
LOCAL = "sliding_attention"


@dataclasses.dataclass(frozen=True)
class Config:
  """A Gemma 3 text model, fields named as in its `config.json` (sizes in elements)."""

  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_hidden_layers: int
  num_attention_heads: int
  num_key_value_heads: int
  head_dim: int
  max_position_embeddings: int  # tokens
  rms_norm_eps: float
  rope_theta: float  # RoPE base of global layers
  rope_local_base_freq: float  # RoPE base of sliding-window layers
  sliding_window: int  # tokens a local layer sees, itself included
  layer_types: tuple[str, ...]  # GLOBAL or LOCAL per layer
  hidden_activation: str
  attention_bias: bool = False


def _layer_types(r: base.Reader) -> tuple[str, ...]:
  """Each layer's attention, read as transformers reads it: `layer_types`, else every
  `sliding_window_pattern`-th layer global and the others local."""
  count = r.required("num_hidden_layers")
  types = r("layer_types")
  if types is None:
    pattern = r("sliding_window_pattern", 6)
    types = [GLOBAL if (i + 1) % pattern == 0 else LOCAL for i in range(count)]
  if len(types) != count or set(types) - {GLOBAL, LOCAL}:
    raise r.refuse("layer_types", f"expected {count} of {GLOBAL!r} or {LOCAL!r}")
  return tuple(types)


def read_config(hf: Mapping[str, Any]) -> Config:
  """A Gemma 3 text `config.json` dict (model_type gemma3_text) as a Config.

  Refuses what the text-only checkpoints (270M, 1B) never set: the larger, multimodal ones scale
  global RoPE, and 27B's query_pre_attn_scalar differs from its head_dim.
  """
  r = base.Reader("gemma3", hf, ("gemma3_text",))
  heads, kv_heads = base.check_heads(r)
  for key in ("final_logit_softcapping", "attn_logit_softcapping", "use_bidirectional_attention"):
    if r(key):
      raise r.refuse(key, "not implemented for Gemma 3")
  if not r("tie_word_embeddings", True):
    raise r.refuse("tie_word_embeddings", "Gemma 3's LM head is its embedding")
  dim = base.head_dim(r)
  # The building blocks' attention scales scores by head_dim**-0.5, and offers no other scale.
  if r("query_pre_attn_scalar", dim) != dim:
    raise r.refuse("query_pre_attn_scalar", f"must equal head_dim ({dim})")
  if r("rope_scaling"):
    raise r.refuse("rope_scaling", "RoPE scaling is not implemented for Gemma 3")
  config = Config(
      vocab_size=r.required("vocab_size"), hidden_size=r.required("hidden_size"),
      intermediate_size=r.required("intermediate_size"),
      num_hidden_layers=r.required("num_hidden_layers"), num_attention_heads=heads,
      num_key_value_heads=kv_heads, head_dim=dim,
      max_position_embeddings=r.required("max_position_embeddings"),
      rms_norm_eps=float(r.required("rms_norm_eps")),
      rope_theta=base.rope_theta(r, 1e6, kind=GLOBAL),
      rope_local_base_freq=base.positive_theta(float(
          r("rope_local_base_freq") or base.rope_theta(r, 1e4, kind=LOCAL))),
      sliding_window=int(r.required("sliding_window")), layer_types=_layer_types(r),
      hidden_activation=base.activation(r, "hidden_activation", "gelu_pytorch_tanh"),
      attention_bias=bool(r("attention_bias", False)))
  r("sliding_window_pattern")
  r.finish()
  return config


def tensor_names(config: Config) -> TensorNames:
  del config
  return dataclasses.replace(
      llama.tensor_names(llama.Config(0, 0, 0, 0, 1, 1, 0, 0, 0.0, 0.0, "silu", True)),
      attn_query_norm="model.layers.{}.self_attn.q_norm",
      attn_key_norm="model.layers.{}.self_attn.k_norm",
      pre_ff_norm="model.layers.{}.pre_feedforward_layernorm",
      post_ff_norm="model.layers.{}.post_feedforward_layernorm",
  )


def model_config(config: Config):
  """The litert-torch ModelConfig of a Gemma 3 Config."""
  from litezoo.conversion.litert import cfg  # pylint: disable=g-import-not-at-top
  # Gemma scales by (1 + weight), in every norm including QK-norm.
  from litezoo.families import blocks  # pylint: disable=g-import-not-at-top
  norm = blocks.norm_config("rms", config.rms_norm_eps, zero_centered=True)
  bases = {GLOBAL: config.rope_theta, LOCAL: config.rope_local_base_freq}
  ff = cfg.FeedForwardConfig(
      type=cfg.FeedForwardType.GATED,
      activation=llama.litert_activation(config.hidden_activation),
      intermediate_size=config.intermediate_size,
      pre_ff_norm_config=norm,
      post_ff_norm_config=norm,
  )

  def block(kind: str):
    local = kind == LOCAL
    return cfg.TransformerBlockConfig(
        attn_config=cfg.AttentionConfig(
            num_heads=config.num_attention_heads,
            head_dim=config.head_dim,
            num_query_groups=config.num_key_value_heads,
            rotary_base=bases[kind],
            rotary_percentage=1.0,
            # Split the fused projection into heads before QK-norm, so it normalizes each head;
            # the projection is then all queries, all keys, all values (not interleaved).
            qkv_transpose_before_split=True,
            qkv_fused_interleaved=False,
            qkv_use_bias=config.attention_bias,
            output_proj_use_bias=config.attention_bias,
            query_norm_config=norm,
            key_norm_config=norm,
            attn_type=cfg.AttentionType.LOCAL_SLIDING if local else cfg.AttentionType.GLOBAL,
            sliding_window_size=config.sliding_window if local else None,
        ),
        ff_config=ff,
        pre_attention_norm_config=norm,
        post_attention_norm_config=norm,
    )

  blocks = [block(kind) for kind in config.layer_types]
  return cfg.ModelConfig(
      vocab_size=config.vocab_size, num_layers=config.num_hidden_layers,
      max_seq_len=config.max_position_embeddings, embedding_dim=config.hidden_size,
      embedding_scale=config.hidden_size**0.5,
      block_configs=blocks,
      final_norm_config=norm,
      lm_head_share_weight_with_embedding=True,
      attention_patterns=[b.attn_config.attn_type for b in blocks],
  )


def build(config: Config, kv_cache_max_len: int):
  """The re-authored model (the forward contract of core.spec.Family)."""
  from litezoo.families import blocks  # pylint: disable=g-import-not-at-top
  return blocks.Decoder(model_config(config), kv_cache_max_len).eval()


def _gguf_transform(name: str, weight, hf: Mapping[str, Any]):
  del hf
  return weight - 1.0 if "norm" in name else weight  # llama.cpp folds Gemma's (1 + w) into w


GGUF = base.GGUFMap(
    architecture="gemma3",
    names={
        **base.GGUF_COMMON_NAMES,
        "blk.{}.attn_q_norm": "model.layers.{}.self_attn.q_norm",
        "blk.{}.attn_k_norm": "model.layers.{}.self_attn.k_norm",
        "blk.{}.post_attention_norm": "model.layers.{}.post_attention_layernorm",
        "blk.{}.ffn_norm": "model.layers.{}.pre_feedforward_layernorm",
        "blk.{}.post_ffw_norm": "model.layers.{}.post_feedforward_layernorm",
    },
    config_keys={**base.GGUF_COMMON_CONFIG, "sliding_window": "attention.sliding_window"},
    transform=_gguf_transform,
)

FAMILY = base.FamilyRecord(name="gemma3", model_types=("gemma3_text",), read_config=read_config,
                           build_model=build, names=tensor_names, gguf=GGUF,
                           litertlm_type="gemma3")

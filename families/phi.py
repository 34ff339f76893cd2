"""Phi-2: attention and MLP in parallel from one LayerNorm, partial rotary embedding, GELU MLP,
biases everywhere, an untied LM head with bias."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from litezoo.core.spec import TensorNames
from litezoo.families import base, llama


@dataclasses.dataclass(frozen=True)
class Config:
  """A Phi (Phi-1/1.5/2) model, fields named as in its `config.json` (sizes in elements)."""

  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_hidden_layers: int
  num_attention_heads: int
  num_key_value_heads: int
  head_dim: int
  max_position_embeddings: int  # tokens
  layer_norm_eps: float
  rope_theta: float
  partial_rotary_factor: float  # the share of each head's dimensions that RoPE rotates
  hidden_act: str


def read_config(hf: Mapping[str, Any]) -> Config:
  r = base.Reader("phi", hf, ("phi",))
  heads, kv_heads = base.check_heads(r)
  if r("qk_layernorm"):
    raise r.refuse("qk_layernorm", "QK layer norms are not implemented for Phi")
  if r("tie_word_embeddings"):
    raise r.refuse("tie_word_embeddings", "Phi's LM head has its own weight and bias")
  config = Config(
      vocab_size=r.required("vocab_size"), hidden_size=r.required("hidden_size"),
      intermediate_size=r.required("intermediate_size"),
      num_hidden_layers=r.required("num_hidden_layers"), num_attention_heads=heads,
      num_key_value_heads=kv_heads, head_dim=base.head_dim(r),
      max_position_embeddings=r.required("max_position_embeddings"),
      layer_norm_eps=float(r.required("layer_norm_eps")), rope_theta=base.rope_theta(r),
      partial_rotary_factor=float(base.rope_parameters(r).get("partial_rotary_factor")
                                  or r("partial_rotary_factor", 1.0)),
      hidden_act=base.activation(r, "hidden_act", "gelu_new"))
  r.finish()
  return config


def tensor_names(config: Config) -> TensorNames:
  del config  # every Phi checkpoint names its tensors the same way
  return TensorNames(
      embedding="model.embed_tokens",
      final_norm="model.final_layernorm",
      lm_head="lm_head",
      pre_attn_norm="model.layers.{}.input_layernorm",
      attn_query_proj="model.layers.{}.self_attn.q_proj",
      attn_key_proj="model.layers.{}.self_attn.k_proj",
      attn_value_proj="model.layers.{}.self_attn.v_proj",
      attn_output_proj="model.layers.{}.self_attn.dense",
      ff_up_proj="model.layers.{}.mlp.fc1",
      ff_down_proj="model.layers.{}.mlp.fc2",
  )


def model_config(config: Config):
  from litezoo.conversion.litert import cfg  # pylint: disable=g-import-not-at-top
  from litezoo.families import blocks  # pylint: disable=g-import-not-at-top
  norm = blocks.norm_config("layer", config.layer_norm_eps)
  block = cfg.TransformerBlockConfig(
      attn_config=cfg.AttentionConfig(
          num_heads=config.num_attention_heads,
          head_dim=config.head_dim,
          num_query_groups=config.num_key_value_heads,
          rotary_base=config.rope_theta,
          rotary_percentage=config.partial_rotary_factor,
          qkv_use_bias=True,
          output_proj_use_bias=True,
      ),
      ff_config=cfg.FeedForwardConfig(
          type=cfg.FeedForwardType.SEQUENTIAL,
          activation=llama.litert_activation(config.hidden_act),
          intermediate_size=config.intermediate_size,
          use_bias=True,
      ),
      pre_attention_norm_config=norm,
      parallel_residual=True,
  )
  return cfg.ModelConfig(
      vocab_size=config.vocab_size, num_layers=config.num_hidden_layers,
      max_seq_len=config.max_position_embeddings, embedding_dim=config.hidden_size,
      block_configs=block,
      final_norm_config=norm,
      lm_head_use_bias=True,
      lm_head_share_weight_with_embedding=False,
  )


def build(config: Config, kv_cache_max_len: int):
  """The re-authored model (the forward contract of core.spec.Family)."""
  return llama.decoder(model_config(config), kv_cache_max_len)


def _implied(hf: Mapping[str, Any]) -> dict:
  """Partial rotary from llama.cpp's rotated dimensions per head (Phi-2: 32 of 80)."""
  count, heads = hf.get("gguf_rope_dimension_count"), hf.get("num_attention_heads")
  if not count or not heads:
    return {}
  return {"partial_rotary_factor": count / (hf["hidden_size"] // heads)}


# llama.cpp's Phi2Model (convert_hf_to_gguf.py, architecture `phi2`): transformers' names mapped
# one to one, no tensor changed; no RoPE base is written (Phi-2's is 10000, the default read).
GGUF = base.GGUFMap(
    architecture="phi2",
    names={"token_embd": "model.embed_tokens",
           "output_norm": "model.final_layernorm",
           "output": "lm_head",
           "blk.{}.attn_norm": "model.layers.{}.input_layernorm",
           "blk.{}.attn_q": "model.layers.{}.self_attn.q_proj",
           "blk.{}.attn_k": "model.layers.{}.self_attn.k_proj",
           "blk.{}.attn_v": "model.layers.{}.self_attn.v_proj",
           "blk.{}.attn_output": "model.layers.{}.self_attn.dense",
           "blk.{}.ffn_up": "model.layers.{}.mlp.fc1",
           "blk.{}.ffn_down": "model.layers.{}.mlp.fc2"},
    config_keys={"num_hidden_layers": "block_count",
                 "hidden_size": "embedding_length",
                 "intermediate_size": "feed_forward_length",
                 "num_attention_heads": "attention.head_count",
                 "num_key_value_heads": "attention.head_count_kv",
                 "max_position_embeddings": "context_length",
                 "layer_norm_eps": "attention.layer_norm_epsilon",
                 "gguf_rope_dimension_count": "rope.dimension_count"},
    implied=_implied)

FAMILY = base.FamilyRecord(name="phi", model_types=("phi",), read_config=read_config,
                           build_model=build, names=tensor_names, gguf=GGUF)

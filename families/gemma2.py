"""Gemma 2: Gemma with RMSNorms on both sides of attention and MLP, soft-capped attention scores
and final logits, alternating sliding-window and global layers, and scores scaled by
query_pre_attn_scalar ** -0.5."""

from typing import Any, Mapping

from litezoo.families import base, decoder


def read_config(hf: Mapping[str, Any]) -> decoder.Config:
  r = base.Reader("gemma2", hf, ("gemma2",))
  if not r("tie_word_embeddings", True):
    raise r.refuse("tie_word_embeddings", "Gemma 2's LM head is its embedding")
  if r("use_bidirectional_attention"):
    raise r.refuse("use_bidirectional_attention", "only causal attention is implemented")
  fields = decoder.common(r, "hidden_activation", "gelu_pytorch_tanh")
  bias = bool(r("attention_bias", False))
  config = decoder.Config(
      **fields, attention_bias=bias, attention_out_bias=bias, norm_placement="sandwich",
      zero_centered_norm=True, embedding_multiplier=fields["hidden_size"]**0.5,
      attention_multiplier=float(r.required("query_pre_attn_scalar"))**-0.5,
      attn_logit_softcapping=r("attn_logit_softcapping"),
      final_logit_softcapping=r("final_logit_softcapping"))
  r.finish()
  return config


def _gguf_transform(name: str, weight, hf: Mapping[str, Any]):
  del hf
  return weight - 1.0 if "norm" in name else weight  # llama.cpp folds Gemma's (1 + w) into w


GGUF = base.GGUFMap(
    architecture="gemma2",
    names={**{k: v for k, v in base.GGUF_COMMON_NAMES.items() if k != "output"},  # tied
           "blk.{}.post_attention_norm": "model.layers.{}.post_attention_layernorm",
           "blk.{}.ffn_norm": "model.layers.{}.pre_feedforward_layernorm",
           "blk.{}.post_ffw_norm": "model.layers.{}.post_feedforward_layernorm"},
    config_keys={**base.GGUF_COMMON_CONFIG, "sliding_window": "attention.sliding_window",
                 "attn_logit_softcapping": "attn_logit_softcapping",
                 "final_logit_softcapping": "final_logit_softcapping"},
    transform=_gguf_transform,
    # llama.cpp scales Gemma 2's scores by head_dim ** -0.5 (27B aside, which it special-cases).
    implied=lambda hf: {"query_pre_attn_scalar": hf["head_dim"]} if "head_dim" in hf else {})

FAMILY = decoder.record("gemma2", ("gemma2",), read_config, gguf=GGUF, litertlm_type="gemma2")

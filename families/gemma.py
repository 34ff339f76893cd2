"""Gemma (1): a Llama-like model with GeGLU, (1 + weight) RMSNorm, embeddings scaled by
sqrt(hidden_size), multi-query attention and a tied LM head."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from litezoo.families import base, llama

Config = llama.Config


def read_config(hf: Mapping[str, Any]) -> Config:
  """A Gemma `config.json` dict as a Llama Config with Gemma's quirks set."""
  r = base.Reader("gemma", hf, ("gemma",))
  heads, kv_heads = base.check_heads(r)
  if not r("tie_word_embeddings", True):
    raise r.refuse("tie_word_embeddings", "Gemma's LM head is its embedding")
  hidden = r.required("hidden_size")
  config = Config(
      vocab_size=r.required("vocab_size"), hidden_size=hidden,
      intermediate_size=r.required("intermediate_size"),
      num_hidden_layers=r.required("num_hidden_layers"), num_attention_heads=heads,
      num_key_value_heads=kv_heads, head_dim=base.head_dim(r),
      max_position_embeddings=r.required("max_position_embeddings"),
      rms_norm_eps=float(r.required("rms_norm_eps")), rope_theta=base.rope_theta(r),
      # Gemma names the MLP activation `hidden_activation`; old configs say `hidden_act`.
      hidden_act=base.activation(r, "hidden_activation", r("hidden_act", "gelu_pytorch_tanh")),
      tie_word_embeddings=True, attention_bias=bool(r("attention_bias", False)),
      zero_centered_norm=True, embedding_scale=hidden**0.5)
  r.finish()
  return config


GGUF = base.GGUFMap(
    architecture="gemma", config_keys=base.GGUF_COMMON_CONFIG,
    names={k: v for k, v in base.GGUF_LLAMA_NAMES.items() if k != "output"},  # always tied
    # llama.cpp folds Gemma's (1 + w) into w, and does not permute its q/k rows.
    transform=lambda name, weight, hf: weight - 1.0 if "norm" in name else weight)

FAMILY = dataclasses.replace(llama.FAMILY, name="gemma", model_types=("gemma",),
                             read_config=read_config, gguf=GGUF)

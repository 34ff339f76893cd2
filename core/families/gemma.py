"""Gemma (1): a Llama-like model with GeGLU, (1 + weight) RMSNorm, embeddings scaled by
sqrt(hidden_size), multi-query attention and a tied LM head."""

from typing import Any, Mapping

from torch import nn

from litezoo.core.families import llama

TENSOR_NAMES = llama.TIED_TENSOR_NAMES


def model_config(hf: Mapping[str, Any]):
  return llama.model_config(
      {**hf, "tie_word_embeddings": True},
      activation=hf.get("hidden_activation") or hf.get("hidden_act", "gelu_pytorch_tanh"),
      zero_centered_norm=True,
      embedding_scale=hf["hidden_size"]**0.5)


def build(hf: Mapping[str, Any], kv_cache_max_len: int) -> nn.Module:
  return llama.decoder(model_config(hf), kv_cache_max_len)

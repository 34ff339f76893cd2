"""Helpers that read Hugging Face `config.json` dicts the same way for every family."""

from typing import Any, Mapping

# HF activation names -> litert-torch ActivationType names.
_ACTIVATIONS = {
    "silu": "SILU",
    "gelu": "GELU",
    "gelu_new": "GELU_TANH",
    "gelu_pytorch_tanh": "GELU_TANH",
}


def activation(name: str):
  from litezoo.core.litert_api import cfg  # pylint: disable=g-import-not-at-top
  if name not in _ACTIVATIONS:
    raise ValueError(f"activation {name!r} is not supported; known: {', '.join(_ACTIVATIONS)}")
  return cfg.ActivationConfig(getattr(cfg.ActivationType, _ACTIVATIONS[name]))


def rope_theta(hf: Mapping[str, Any]) -> float:
  """RoPE base, from `rope_theta` or transformers 5's `rope_parameters`."""
  return float(hf.get("rope_theta") or (hf.get("rope_parameters") or {}).get("rope_theta", 10000.0))


def head_dim(hf: Mapping[str, Any]) -> int:
  return hf.get("head_dim") or hf["hidden_size"] // hf["num_attention_heads"]


def sizes(hf: Mapping[str, Any]) -> dict[str, int]:
  """The ModelConfig fields every family reads the same way from a `config.json`."""
  return dict(vocab_size=hf["vocab_size"], num_layers=hf["num_hidden_layers"],
              max_seq_len=hf["max_position_embeddings"], embedding_dim=hf["hidden_size"])

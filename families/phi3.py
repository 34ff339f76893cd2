"""Phi-3, Phi-3.5 and Phi-4-mini: Llama with one fused qkv projection and one fused gate/up
projection, a sliding window, partial rotary embeddings and LongRoPE."""

from typing import Any, Mapping

from litezoo.families import base, decoder


def read_config(hf: Mapping[str, Any]) -> decoder.Config:
  r = base.Reader("phi3", hf, ("phi3",))
  config = decoder.Config(**decoder.common(r), fused_qkv=True, fused_gate_up=True)
  r("resid_pdrop"), r("embd_pdrop")  # dropout: training only
  r.finish()
  return config


def _factors(kind: str):
  """llama.cpp keeps LongRoPE's factors as tensors rope_factors_{short,long}: back into the
  rope_scaling they came from (the original context is metadata)."""

  def read(values, hf: Mapping[str, Any]) -> dict:
    scaling = dict(hf.get("rope_scaling") or {})
    scaling.update(rope_type="longrope", **{f"{kind}_factor": [float(v) for v in values]})
    return {"rope_scaling": scaling}

  return read


def _implied(hf: Mapping[str, Any]) -> dict:
  """Partial rotary from llama.cpp's rotated dimension count (Phi-4-mini rotates 3/4)."""
  count, heads = hf.get("gguf_rope_dimension_count"), hf.get("num_attention_heads")
  if not count or not heads:
    return {}
  return {"partial_rotary_factor": count / (hf.get("head_dim") or hf["hidden_size"] // heads)}


GGUF = base.GGUFMap(
    architecture="phi3",
    names={**{k: v for k, v in base.GGUF_LLAMA_NAMES.items()
              if not k.startswith(("blk.{}.attn_q", "blk.{}.attn_k", "blk.{}.attn_v",
                                   "blk.{}.ffn_gate", "blk.{}.ffn_up"))},
           "blk.{}.attn_qkv": "model.layers.{}.self_attn.qkv_proj",
           "blk.{}.ffn_up": "model.layers.{}.mlp.gate_up_proj"},  # llama.cpp keeps them fused
    config_keys={**base.GGUF_COMMON_CONFIG, "sliding_window": "attention.sliding_window",
                 "original_max_position_embeddings": "rope.scaling.original_context_length",
                 "gguf_rope_dimension_count": "rope.dimension_count"},
    implied=_implied,
    config_tensors={"rope_factors_short.weight": _factors("short"),
                    "rope_factors_long.weight": _factors("long")})

FAMILY = decoder.record("phi3", ("phi3",), read_config, gguf=GGUF)

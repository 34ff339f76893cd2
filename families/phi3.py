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


GGUF = base.GGUFMap(
    architecture="phi3",
    names={**{k: v for k, v in base.GGUF_LLAMA_NAMES.items()
              if not k.startswith(("blk.{}.attn_q", "blk.{}.attn_k", "blk.{}.attn_v",
                                   "blk.{}.ffn_gate", "blk.{}.ffn_up"))},
           "blk.{}.attn_qkv": "model.layers.{}.self_attn.qkv_proj",
           "blk.{}.ffn_up": "model.layers.{}.mlp.gate_up_proj"},  # llama.cpp keeps them fused
    config_keys={**base.GGUF_COMMON_CONFIG, "sliding_window": "attention.sliding_window"})

FAMILY = decoder.record("phi3", ("phi3",), read_config, gguf=GGUF)

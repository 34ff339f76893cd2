"""Qwen3 (dense): Qwen2 without the q/k/v biases (`attention_bias` sets all four) and with
QK-norm, an RMSNorm over each head of the queries and keys before RoPE."""

from typing import Any, Mapping

from litezoo.families import base, decoder


def read_config(hf: Mapping[str, Any]) -> decoder.Config:
  r = base.Reader("qwen3", hf, ("qwen3",))
  bias = bool(r("attention_bias", False))
  config = decoder.Config(**decoder.common(r), attention_bias=bias, attention_out_bias=bias,
                          qk_norm="head")
  r.finish()
  return config


GGUF = base.GGUFMap(
    architecture="qwen3",
    names={**base.GGUF_LLAMA_NAMES, **base.GGUF_QK_NORM_NAMES},
    config_keys=base.GGUF_COMMON_CONFIG)

FAMILY = decoder.record("qwen3", ("qwen3",), read_config, gguf=GGUF)

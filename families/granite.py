"""Granite (3.x dense): Llama with an embedding multiplier, a residual multiplier on attention
and MLP outputs, an attention scale of its own and logits divided by `logits_scaling`."""

from typing import Any, Mapping

from litezoo.families import base, decoder, llama


def read_config(hf: Mapping[str, Any]) -> decoder.Config:
  r = base.Reader("granite", hf, ("granite",))
  bias = bool(r("attention_bias", False))
  config = decoder.Config(
      **decoder.common(r, windows=False), attention_bias=bias, attention_out_bias=bias,
      mlp_bias=bool(r("mlp_bias", False)),
      embedding_multiplier=float(r("embedding_multiplier", 1.0)),
      residual_multiplier=float(r("residual_multiplier", 1.0)),
      logits_scaling=float(r("logits_scaling", 1.0)),
      attention_multiplier=float(r("attention_multiplier", 1.0)))
  r.finish()
  return config


GGUF = base.GGUFMap(
    architecture="granite", names=llama.GGUF.names,
    config_keys={**base.GGUF_COMMON_CONFIG, "attention_multiplier": "attention.scale",
                 "embedding_multiplier": "embedding_scale",
                 "residual_multiplier": "residual_scale", "logits_scaling": "logit_scale"},
    transform=llama.GGUF.transform)

FAMILY = decoder.record("granite", ("granite",), read_config, gguf=GGUF)

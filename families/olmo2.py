"""OLMo 2: RMSNorms after attention and after the MLP (none before), and QK-norm over the whole
query and key projections."""

from typing import Any, Mapping

from litezoo.families import base, decoder


def read_config(hf: Mapping[str, Any]) -> decoder.Config:
  r = base.Reader("olmo2", hf, ("olmo2",))
  bias = bool(r("attention_bias", False))
  config = decoder.Config(**decoder.common(r, windows=False), attention_bias=bias,
                          attention_out_bias=bias, qk_norm="full", norm_placement="post")
  r.finish()
  return config


GGUF = base.GGUFMap(
    architecture="olmo2",
    names={**{k: v for k, v in base.GGUF_COMMON_NAMES.items() if k != "blk.{}.attn_norm"},
           **base.GGUF_QK_NORM_NAMES,
           "blk.{}.post_attention_norm": "model.layers.{}.post_attention_layernorm",
           "blk.{}.post_ffw_norm": "model.layers.{}.post_feedforward_layernorm"},
    config_keys=base.GGUF_COMMON_CONFIG)

FAMILY = decoder.record("olmo2", ("olmo2",), read_config, gguf=GGUF)

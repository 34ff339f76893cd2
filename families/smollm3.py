"""SmolLM3: Llama whose every fourth layer has no RoPE (`no_rope_layers`)."""

from typing import Any, Mapping

from litezoo.families import base, decoder, llama

def read_config(hf: Mapping[str, Any]) -> decoder.Config:
  r = base.Reader("smollm3", hf, ("smollm3",))
  fields = decoder.common(r)
  layers = r("no_rope_layers") or [1] * fields["num_hidden_layers"]
  r("no_rope_layer_interval")  # transformers folds it into no_rope_layers
  if len(layers) != fields["num_hidden_layers"]:
    raise r.refuse("no_rope_layers", f"expected {fields['num_hidden_layers']} entries")
  bias = bool(r("attention_bias", False))
  config = decoder.Config(**fields, no_rope_layers=tuple(int(bool(v)) for v in layers),
                          attention_bias=bias, attention_out_bias=bias,
                          mlp_bias=bool(r("mlp_bias", False)))
  r.finish()
  return config


GGUF = base.GGUFMap(architecture="smollm3", names=llama.GGUF.names,
                    config_keys=base.GGUF_COMMON_CONFIG, transform=llama.GGUF.transform)

FAMILY = decoder.record("smollm3", ("smollm3",), read_config, gguf=GGUF)

"""Mistral (and Ministral): Llama with a sliding attention window on every layer (Ministral: on the
layers its `layer_types` marks)."""

from typing import Any, Mapping

from litezoo.families import base, decoder, llama


def read_config(hf: Mapping[str, Any]) -> decoder.Config:
  r = base.Reader("mistral", hf, FAMILY.model_types)
  config = decoder.Config(**decoder.common(r))
  r.finish()
  return config


FAMILY = decoder.record("mistral", ("mistral", "ministral"), read_config, gguf=llama.GGUF)

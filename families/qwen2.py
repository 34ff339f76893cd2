"""Qwen2 / Qwen2.5: Llama with biases on the query, key and value projections (none on the output
projection), sliding windows only where `use_sliding_window` turns them on."""

from typing import Any, Mapping

from litezoo.families import base, decoder


def read_config(hf: Mapping[str, Any]) -> decoder.Config:
  r = base.Reader("qwen2", hf, ("qwen2",))
  config = decoder.Config(**decoder.common(r), attention_bias=True)
  r.finish()
  return config


GGUF = base.GGUFMap(architecture="qwen2", names=base.GGUF_LLAMA_NAMES,
                    config_keys=base.GGUF_COMMON_CONFIG)  # llama.cpp stores Qwen's q/k as they are

FAMILY = decoder.record("qwen2", ("qwen2",), read_config, gguf=GGUF)

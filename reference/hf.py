"""The original model, through Hugging Face transformers: what every re-authored model is
verified against, driven as a Decoder (runtime/decoder.py)."""

from __future__ import annotations

import os
import pathlib
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from litezoo.sources.random_weights import random_model  # noqa: F401  (re-exported for tests)


def load(checkpoint: str | os.PathLike, config: Mapping[str, Any]) -> nn.Module:
  """The original model from a checkpoint: a directory, with its own config.json when it has one
  (so a wrong plugin config shows up as a difference) else the plugin's; or a GGUF file, which
  transformers reads and dequantizes with its own code (independent of sources/gguf.py)."""
  import transformers  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(checkpoint)
  if path.suffix == ".gguf":
    return transformers.AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32).eval()
  hf_config = (None if (path / "config.json").exists()
               else transformers.AutoConfig.for_model(**config))
  return transformers.AutoModelForCausalLM.from_pretrained(
      path, config=hf_config, dtype=torch.float32).eval()


def decoder_layers(model: nn.Module) -> list[nn.Module]:
  """The transformer blocks of a transformers causal LM, in order."""
  return list(model.model.layers)


class HFDecoder:
  """transformers' model with its own KV cache, as a Decoder; logits float32 numpy."""

  def __init__(self, model: nn.Module, kv_cache_max_len: int = 1 << 30):
    self.model = model
    self.kv_cache_max_len = kv_cache_max_len
    self.reset()

  def reset(self) -> None:
    self.past, self.position = None, 0

  @torch.no_grad()
  def prefill(self, tokens: list[int], all_logits: bool = False) -> np.ndarray:
    """Logits [len(tokens), vocab] with `all_logits`, else [1, vocab] (runtime/decoder.py)."""
    out = self.model(torch.tensor([tokens]), past_key_values=self.past, use_cache=True)
    self.past = out.past_key_values
    self.position += len(tokens)
    logits = out.logits[0].float().numpy()
    return logits if all_logits else logits[-1:]

  def decode(self, token: int) -> np.ndarray:
    return self.prefill([token])[0]
